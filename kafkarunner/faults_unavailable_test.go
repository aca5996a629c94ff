package kafkarunner_test

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
)

// TestRedisRefusingWritesParksNoStream: a Redis that cannot serve writes for
// a while — READONLY from a master a failover turned into a replica,
// LOADING while a restarted server reads its AOF, a refused connection — is
// the store's fault, not the event's. The fault suite found streams parked
// as apply-failed after a Redis restart (LOADING outlasted the five apply
// attempts); parked, their later events waited for an admin. Here a real
// server refuses writes with READONLY (it is made a replica of an
// unreachable master, which keeps its data) for longer than the retry
// policy; the partitions must wait and retry, park nothing, and apply
// every event exactly once once it serves writes again.
func TestRedisRefusingWritesParksNoStream(t *testing.T) {
	f, srv := privateRedis(t, 2, testenv.RedisServerOptions{})
	want := f.produce(t, 10, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Do(ctxFor(t), "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	more := f.produce(t, 10, 3, "process/u/")
	// Longer than the runner's apply retries (5 attempts, 1.5 s of backoff).
	time.Sleep(4 * time.Second)
	if err := admin.Do(ctxFor(t), "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	maps.Copy(want, more)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	if parked, err := rep.r.Parked(ctxFor(t)); err != nil || len(parked) != 0 {
		t.Fatalf("parked %+v (%v): a store that refused writes parked streams", parked, err)
	}
	waitStates(t, rep.r, 2, kafkarunner.PartitionRunning)
}

// unavailableFor wraps a projection: the events of one stream fail with an
// error matching framework.ErrUnavailable until the deadline, as a store
// that cannot serve them would (the projection's own store, or a Redis
// that answers LOADING while the park below it would succeed).
type unavailableFor struct {
	framework.Projection
	stream string
	until  time.Time
	fails  atomic.Int64
}

func (u *unavailableFor) Apply(ctx context.Context, e framework.Event) error {
	if e.StreamID == u.stream && time.Now().Before(u.until) {
		u.fails.Add(1)
		return fmt.Errorf("read model of %s: LOADING Redis is loading the dataset in memory: %w", e.StreamID, framework.ErrUnavailable)
	}
	return u.Projection.Apply(ctx, e)
}

// TestApplyUnavailableIsRetriedNotParked: an apply that fails because its
// store is unavailable is retried in place, past the retry policy's
// attempts, for as long as that lasts; the stream is never parked
// (apply-failed is for events the projection cannot apply), and every
// event is applied exactly once. On the old runner the stream was parked
// after five attempts and its later events held until an admin acted.
func TestApplyUnavailableIsRetriedNotParked(t *testing.T) {
	f := newFixture(t, 2)
	want := f.produce(t, 6, 3, "process/t/")
	var stream string
	for id := range want {
		stream = id
		break
	}
	p := f.counter(t)
	u := &unavailableFor{Projection: p, stream: stream, until: time.Now().Add(4 * time.Second)}
	rep := f.start(t, u, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	if parked, err := rep.r.Parked(ctxFor(t)); err != nil || len(parked) != 0 {
		t.Fatalf("parked %+v (%v): an unavailable store parked a stream", parked, err)
	}
	if n := u.fails.Load(); n <= 5 {
		t.Fatalf("the unavailable apply was tried %d times: it must be retried past the policy's 5 attempts", n)
	}
}
