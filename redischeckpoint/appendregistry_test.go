package redischeckpoint_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/appendguard/guardtest"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// appendRegistry returns a registry of topic "orders" on the test binary's
// Redis (real under scripts/test.sh) in a namespace of its own.
func appendRegistry(t *testing.T) *redischeckpoint.AppendRegistry {
	t.Helper()
	env := testenv.Redis(t)
	a, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: env.Client, Namespace: env.Prefix(t)}, "orders")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAppendRegistryConformance(t *testing.T) {
	guardtest.Run(t, func(t *testing.T) appendguard.Registry { return appendRegistry(t) })
}

// TestAppendRegistryConfig: a topic that is not a Kafka topic name (it
// would put a hash tag or a pattern in the keys) and a bad Config are
// refused.
func TestAppendRegistryConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, topic := range []string{"", "a{b}", "a b", "a*", strings.Repeat("t", 250)} {
		if _, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: c}, topic); err == nil {
			t.Errorf("NewAppendRegistry(topic %q) succeeded", topic)
		}
	}
	if _, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{}, "orders"); err == nil {
		t.Error("NewAppendRegistry without a client succeeded")
	}
	a, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: c, Namespace: "ns"}, "orders.v1")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Key("process/t/1"); got != "ns:appends:orders.v1:{process/t/1}" {
		t.Errorf("Key = %q", got)
	}
}

// TestAppendRegistryLargeSequences: sequences are exact over the whole
// uint64 range (Lua numbers are doubles), and a reservation past 2^64-1 is
// refused.
func TestAppendRegistryLargeSequences(t *testing.T) {
	a := appendRegistry(t)
	ctx := ctxFor(t)
	for i, start := range []uint64{1<<53 + 1, math.MaxUint64 - 3} {
		id := "process/big/" + strconv.Itoa(i)
		if _, err := a.Seed(ctx, id, appendguard.Head{Sequence: start, Offset: 1 << 62}); err != nil {
			t.Fatal(err)
		}
		r, err := a.Reserve(ctx, id, framework.ExactVersion(start), 2, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if r.First != start+1 || r.Last() != start+2 || r.Head != (appendguard.Head{Sequence: start, Offset: 1 << 62}) {
			t.Fatalf("reservation %+v on head %d", r, start)
		}
		if err := a.Commit(ctx, r, math.MaxInt64); err != nil {
			t.Fatal(err)
		}
		h, p, ok, err := a.Get(ctx, id)
		if err != nil || !ok || p != nil || h != (appendguard.Head{Sequence: start + 2, Offset: math.MaxInt64}) {
			t.Fatalf("Get = %+v, %+v, %v, %v", h, p, ok, err)
		}
		var conflict *framework.VersionConflictError
		if _, err := a.Reserve(ctx, id, framework.ExactVersion(start+1), 1, "w", time.Minute); !errors.As(err, &conflict) || conflict.Actual != start+2 {
			t.Fatalf("Reserve at %d: %v, want a conflict at %d", start+1, err, start+2)
		}
	}
	// MaxUint64-1 is the head now: one more sequence fits, two do not.
	id := "process/big/1"
	if _, err := a.Reserve(ctx, id, framework.AnyVersion, 2, "w", time.Minute); err == nil || !strings.Contains(err.Error(), "largest") {
		t.Fatalf("Reserve past MaxUint64: %v", err)
	}
	if r, err := a.Reserve(ctx, id, framework.AnyVersion, 1, "w", time.Minute); err != nil || r.First != math.MaxUint64 {
		t.Fatalf("Reserve of MaxUint64: %+v, %v", r, err)
	}
}

// TestAppendRegistryReplicated: with WaitReplicas 1 the registry passes the
// suite on a master with a replica, and a write the replica does not
// acknowledge is a NotReplicatedError.
func TestAppendRegistryReplicated(t *testing.T) {
	master, replica := replicatedPair(t)
	const timeout = 300 * time.Millisecond
	cfg := redischeckpoint.Config{Client: master.Client(t), Namespace: "rep", WaitReplicas: 1, WaitTimeout: timeout}
	a, err := redischeckpoint.NewAppendRegistry(cfg, "orders")
	if err != nil {
		t.Fatal(err)
	}
	guardtest.Run(t, func(*testing.T) appendguard.Registry { return a })

	ctx := ctxFor(t)
	id := "process/rep/1"
	if _, err := a.Seed(ctx, id, appendguard.Head{Offset: -1}); err != nil {
		t.Fatal(err)
	}
	replica.Pause()
	defer replica.Resume()
	r, err := a.Reserve(ctx, id, framework.NoStream, 1, "w", time.Minute)
	var nre *redischeckpoint.NotReplicatedError
	if !errors.As(err, &nre) || nre.Wanted != 1 || nre.Acked != 0 || !strings.Contains(err.Error(), "reservation of stream "+id) {
		t.Fatalf("Reserve with the replica stopped: %v, want a NotReplicatedError", err)
	}
	// The reservation comes with the error, so that it can be released.
	if r.Token == "" || r.First != 1 {
		t.Fatalf("reservation returned with the error: %+v", r)
	}
	if err := a.Resolve(ctx, r, false, -1); !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Fatalf("Resolve with the replica stopped: %v, want ErrNotReplicated", err)
	}
	if _, p, _, err := a.Get(ctx, id); err != nil || p != nil {
		t.Fatalf("Get after the release: %+v, %v", p, err)
	}
}

// TestAppendRegistryOnAnUnavailableRedis: a server that refuses writes
// (READONLY: a master demoted by a failover) or is down gives errors that
// match framework.ErrUnavailable, and the registry works again once the
// server serves writes.
func TestAppendRegistryOnAnUnavailableRedis(t *testing.T) {
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	a, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: client, Namespace: "unavailable"}, "orders")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	id := "process/u/1"
	if _, err := a.Seed(ctx, id, appendguard.Head{Offset: -1}); err != nil {
		t.Fatal(err)
	}

	if err := client.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = a.Reserve(ctx, id, framework.NoStream, 1, "w", time.Minute)
	var ue *redischeckpoint.UnavailableError
	if !errors.Is(err, framework.ErrUnavailable) || !errors.As(err, &ue) || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("Reserve on a read-only server: %v, want an UnavailableError (READONLY) matching framework.ErrUnavailable", err)
	}
	t.Logf("read-only: %v", err)
	if _, p, ok, err := a.Get(ctx, id); err != nil || !ok || p != nil {
		t.Fatalf("Get on the read-only server: %+v, %v, %v; want the stream without a reservation", p, ok, err)
	}
	if err := client.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := a.Reserve(ctx, id, framework.NoStream, 1, "w", time.Minute)
	if err != nil {
		t.Fatalf("Reserve after the server serves writes again: %v", err)
	}

	srv.Stop()
	if err := a.Commit(ctx, r, 0); !errors.Is(err, framework.ErrUnavailable) {
		t.Fatalf("Commit on a stopped server: %v, want it to match framework.ErrUnavailable", err)
	}
	if _, _, _, err := a.Get(ctx, id); !errors.Is(err, framework.ErrUnavailable) {
		t.Fatalf("Get on a stopped server: %v, want it to match framework.ErrUnavailable", err)
	}
}
