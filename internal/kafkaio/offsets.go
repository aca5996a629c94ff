package kafkaio

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// offsetsRetryFor bounds how long ListOffsets retries: longer than a
// broker's session in a KRaft cluster (the controller moves the leadership
// of a dead broker's partitions after broker.session.timeout.ms, 9 s by
// default).
const offsetsRetryFor = 15 * time.Second

// ListOffsets calls list (an admin client's ListStartOffsets,
// ListEndOffsets or ListCommittedOffsets) and calls it again, with backoff,
// while the request or a partition fails with a retriable error: a leader
// moving after a broker died or a topic was just created
// (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION
// right after the creation…). It gives up after offsetsRetryFor or when ctx
// ends, returning the last answer, per-partition errors included.
func ListOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topics ...string) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(offsetsRetryFor)
	wait := 50 * time.Millisecond
	for {
		listed, err := list(ctx, topics...)
		retry := err != nil && Transient(err)
		if err == nil {
			retry = retriableListed(listed)
		}
		if !retry || time.Now().Add(wait).After(deadline) {
			return listed, err
		}
		select {
		case <-ctx.Done():
			return listed, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// retriableListed reports whether a partition of listed failed with a
// retriable error.
func retriableListed(listed kadm.ListedOffsets) bool {
	retry := false
	listed.Each(func(o kadm.ListedOffset) {
		var ke *kerr.Error
		if o.Err != nil && (kerr.IsRetriable(o.Err) || errors.As(o.Err, &ke) && ke.Retriable) {
			retry = true
		}
	})
	return retry
}

// Transient reports whether err is worth retrying: a retriable Kafka error,
// or a broker that cannot be reached now (a restart: its partitions'
// leadership moves to another broker), also inside kadm's per-shard errors.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var shards *kadm.ShardErrors
	if errors.As(err, &shards) {
		for _, se := range shards.Errs {
			if !Transient(se.Err) {
				return false
			}
		}
		return len(shards.Errs) > 0
	}
	var netErr net.Error
	return kerr.IsRetriable(err) || errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
