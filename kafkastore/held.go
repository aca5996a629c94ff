package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// heldReadIdle bounds how long a read of held records waits for the next
// record before it gives up with an error (the offsets it reads up to were
// processed, so their records exist). A variable for tests.
var heldReadIdle = 30 * time.Second

// readPartition calls fn for each record of topic/partition with offset in
// [from, end), read committed, with a client of its own (the runner's
// client consumes as a group member and cannot read one partition from an
// offset). Records of aborted transactions are not delivered; the read
// ends at the first record at or past end-1. fn's error ends the read.
func readPartition(ctx context.Context, seeds []string, opts []kgo.Opt, topic string, partition int32, from, end int64, fn func(*kgo.Record) error) error {
	if end <= from {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}, opts...)...)
	if err != nil {
		return fmt.Errorf("kafkastore: read %s/%d: client: %w", topic, partition, err)
	}
	defer cl.Close()
	next := from
	for next < end {
		pollCtx, cancel := context.WithTimeout(ctx, heldReadIdle)
		fetches := cl.PollFetches(pollCtx)
		timedOut := pollCtx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("kafkastore: read %s/%d: %w", t, p, err)
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		progressed := false
		var cbErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if cbErr != nil || r.Topic != topic || r.Partition != partition || r.Offset < next || r.Offset >= end {
				if r.Offset >= end-1 {
					next = end
				}
				return
			}
			progressed = true
			next = r.Offset + 1
			cbErr = fn(r)
		})
		if cbErr != nil {
			return cbErr
		}
		if timedOut && !progressed && next < end {
			return fmt.Errorf("kafkastore: read %s/%d: no record between offsets %d and %d within %s", topic, partition, next, end, heldReadIdle)
		}
	}
	return nil
}
