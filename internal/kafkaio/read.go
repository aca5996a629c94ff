package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadIdle is how long a read of held records waits for the next
// record before it fails (the worker retries it, the partition shows as
// retrying with the error). A variable for tests.
var ReadIdle = 30 * time.Second

// ErrStopped is returned by ReadPartition when its stop function said so.
var ErrStopped = errors.New("kafkastore: partition stopping")

// ReadPartition calls fn for each record of topic/partition with offset in
// [from, end), read committed, with a client of its own (the runner's
// client consumes as a group member and cannot read one partition from an
// offset). Transaction markers are read and passed over. The range must
// end after a record the caller has seen: records of aborted transactions
// are not delivered, so a range that ends in them is never finished (the
// read fails after ReadIdle). stop, checked between polls, ends the
// read with ErrStopped. fn's error ends the read.
func ReadPartition(ctx context.Context, seeds []string, opts []kgo.Opt, topic string, partition int32, from, end int64, stop func() bool, fn func(*kgo.Record) error) error {
	if end <= from {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, opts...)...)
	if err != nil {
		return fmt.Errorf("kafkastore: read %s/%d: client: %w", topic, partition, err)
	}
	defer cl.Close()
	next := from
	lastProgress := time.Now()
	for next < end {
		if stop != nil && stop() {
			return ErrStopped
		}
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pollCtx)
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
		var cbErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if cbErr != nil || r.Topic != topic || r.Partition != partition || r.Offset < next {
				return
			}
			lastProgress = time.Now()
			if r.Offset >= end {
				next = end
				return
			}
			next = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			cbErr = fn(r)
		})
		if cbErr != nil {
			return cbErr
		}
		if next >= end {
			return nil
		}
		if idle := time.Since(lastProgress); idle >= ReadIdle {
			return fmt.Errorf("kafkastore: read %s/%d: no record between offsets %d and %d for %s", topic, partition, next, end, idle.Round(time.Second))
		}
	}
	return nil
}
