package chaos

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
)

// eventType is the type of every workload event.
const eventType = "chaos.counted"

// StreamName is the ID of workload stream i.
func StreamName(i int) string { return fmt.Sprintf("s-%04d", i) }

// truth is the ground truth the workload builds from the broker's acks,
// without the code under test: per stream, the highest sequence such that
// it and every lower one were acked.
type truth struct {
	mu    sync.Mutex
	acked map[string]uint64
	// uncertain holds streams whose produce of acked+1 failed: that record
	// may or may not be in the log, and the stream got no more events.
	uncertain map[string]bool
	events    atomic.Int64
	failures  atomic.Int64
}

// workload appends events to topic at about rate events per second, over
// streams streams, until ctx is done. Each of producers goroutines owns a
// set of streams and produces one event per stream per round with
// ProduceSync, so a stream's next event is only sent after the previous one
// was acked: per-stream order holds without relying on the client.
func runWorkload(ctx context.Context, seeds []string, topic string, streams, rate int, t *truth) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),                   // idempotent by default with acks=all
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 on the key, as kafkastore and the Java clients
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(20*time.Second),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	const producers = 8
	owned := make([][]string, producers)
	for i := range streams {
		owned[i%producers] = append(owned[i%producers], StreamName(i))
	}
	// Each round of a producer appends len(owned) events; pace the rounds
	// so all producers together make about rate events per second.
	var wg sync.WaitGroup
	for g := range producers {
		mine := owned[g]
		if len(mine) == 0 {
			continue
		}
		interval := time.Duration(float64(time.Second) * float64(len(mine)*producers) / float64(max(rate, 1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := map[string]uint64{}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var recs []*kgo.Record
				t.mu.Lock()
				for _, s := range mine {
					if t.uncertain[s] {
						continue
					}
					next[s] = t.acked[s] + 1
					recs = append(recs, record(s, next[s]))
				}
				t.mu.Unlock()
				// Not ctx: a record in flight is either acked or failed,
				// never abandoned half-way by the end of the workload.
				pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res := cl.ProduceSync(pctx, recs...)
				cancel()
				t.mu.Lock()
				for _, r := range res {
					s := string(r.Record.Key)
					if r.Err != nil {
						t.uncertain[s] = true
						t.failures.Add(1)
						continue
					}
					t.acked[s] = next[s]
					t.events.Add(1)
				}
				t.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return nil
}

func record(stream string, seq uint64) *kgo.Record {
	now := time.Now().UTC()
	return &kgo.Record{
		Key:   []byte(stream),
		Value: []byte(strconv.FormatUint(seq, 10)),
		Headers: []kgo.RecordHeader{
			{Key: kafkastore.HeaderStreamID, Value: []byte(stream)},
			{Key: kafkastore.HeaderSequence, Value: strconv.AppendUint(nil, seq, 10)},
			{Key: kafkastore.HeaderEventID, Value: []byte(stream + "-" + strconv.FormatUint(seq, 10))},
			{Key: kafkastore.HeaderType, Value: []byte(eventType)},
			{Key: kafkastore.HeaderRecordedAt, Value: now.AppendFormat(nil, time.RFC3339Nano)},
		},
		Timestamp: now,
	}
}
