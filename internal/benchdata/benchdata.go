// Package benchdata writes the events the throughput benchmarks read, and
// clears what a round left in Redis: the runner's benchmarks (kafkarunner)
// and the peers command (internal/benchpeers) measure on the same records.
package benchdata

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
)

// streamID is the ID of benchmark stream i.
func streamID(i int) string { return fmt.Sprintf("process/bench/%05d", i) }

// ProduceCounted writes records events of type "Counted" with a payload of
// size bytes through cl (to its default produce topic), spread round robin
// over streams streams (each stream's sequences are contiguous from 1), in
// the header contract, keyed by stream ID: franz-go's default partitioner
// is Kafka's murmur2, so each stream lands on its home partition.
func ProduceCounted(ctx context.Context, cl *kgo.Client, records, streams, size int) error {
	value := []byte(strings.Repeat("x", size))
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	seqs := make([]uint64, streams)
	ids := make([]string, streams)
	for i := range ids {
		ids[i] = streamID(i)
	}
	var failed atomic.Value
	for i := range records {
		s := i % streams
		seqs[s]++
		seq := strconv.FormatUint(seqs[s], 10)
		id := ids[s]
		r := &kgo.Record{Key: []byte(id), Value: value, Headers: []kgo.RecordHeader{
			{Key: kafkastore.HeaderStreamID, Value: []byte(id)},
			{Key: kafkastore.HeaderSequence, Value: []byte(seq)},
			{Key: kafkastore.HeaderEventID, Value: []byte(id + "#" + seq)},
			{Key: kafkastore.HeaderType, Value: []byte("Counted")},
			{Key: kafkastore.HeaderSchemaVersion, Value: []byte("1")},
			{Key: kafkastore.HeaderRecordedAt, Value: now},
		}}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if err, _ := failed.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// UnlinkPrefix removes the keys starting with prefix (a benchmark round's
// read model and cursors), without blocking Redis.
func UnlinkPrefix(ctx context.Context, red redis.UniversalClient, prefix string) {
	iter := red.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		red.Unlink(ctx, keys...)
	}
}
