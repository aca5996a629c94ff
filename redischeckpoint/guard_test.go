package redischeckpoint_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// privateStore is a Store on a Redis server of the test's own.
func privateStore(t *testing.T, readTimeout time.Duration) (*redischeckpoint.Store, *testenv.RedisServer, *redis.Client) {
	t.Helper()
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: readTimeout, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	return s, srv, c
}

// TestLostWritesAreRefused: Redis comes back from an older snapshot (what a
// failover to a replica that missed writes does). The fence holder's next
// write finds fewer writes than it made and is refused before writing.
func TestLostWritesAreRefused(t *testing.T) {
	s, srv, c := privateStore(t, 0)
	ctx := ctxFor(t)
	f, err := s.AcquireFence(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	advance := func(seq uint64) error {
		return s.Advance(fctx, "p", map[string]uint64{"process/t/a": seq})
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if err := advance(seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(3); seq <= 5; seq++ {
		if err := advance(seq); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop()
	srv.Start()
	err = advance(6)
	sl, ok := errors.AsType[*redischeckpoint.StateLostError](err)
	if !ok || !errors.Is(err, controlplane.ErrStateLost) || sl.Partition != 0 || !strings.Contains(err.Error(), "write serial 2") {
		t.Fatalf("write after the restore = %v, want a StateLostError naming the serial Redis holds", err)
	}
	if cur, _ := s.Cursors(ctx, "p", []string{"process/t/a"}); cur["process/t/a"] != 2 {
		t.Errorf("cursor %d after the refused write, want the snapshot's 2", cur["process/t/a"])
	}
	if err := s.CheckState(fctx, "p"); !errors.Is(err, controlplane.ErrStateLost) {
		t.Errorf("CheckState = %v, want ErrStateLost", err)
	}
	// A new fence starts from what Redis holds now.
	f2, err := s.AcquireFence(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(controlplane.WithFence(ctx, f2), "p", map[string]uint64{"process/t/a": 3}); err != nil {
		t.Errorf("the new fence's write: %v", err)
	}
}

// TestFlushedRedisRefusesTheFence: after FLUSHALL the fence itself went
// back in time: a write with the old fence is lost state, not fenced.
func TestFlushedRedisRefusesTheFence(t *testing.T) {
	s, _, c := privateStore(t, 0)
	ctx := ctxFor(t)
	f, err := s.AcquireFence(ctx, "p", 3)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	if err := s.Advance(fctx, "p", map[string]uint64{"process/t/a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	err = s.Advance(fctx, "p", map[string]uint64{"process/t/a": 2})
	if !errors.Is(err, controlplane.ErrStateLost) || errors.Is(err, controlplane.ErrFenced) || !strings.Contains(err.Error(), "older than the writer") {
		t.Errorf("write after FLUSHALL = %v, want lost state (the fence went back in time)", err)
	}
	if n, _ := c.DBSize(ctx).Result(); n != 0 {
		t.Errorf("the refused write left %d keys", n)
	}
}

// TestUnknownOutcomeIsNotALoss: a write times out on the client while the
// server is frozen (SIGSTOP) and runs when it continues. The holder cannot
// know whether it ran; its next writes are accepted either way. The same
// holds when go-redis itself sends the script again after a timeout (its
// default MaxRetries): the second run finds a serial above the count.
func TestUnknownOutcomeIsNotALoss(t *testing.T) {
	s, srv, _ := privateStore(t, 300*time.Millisecond)
	ctx := ctxFor(t)
	f, err := s.AcquireFence(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	if err := s.Advance(fctx, "p", map[string]uint64{"process/t/a": 1}); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	err = s.Advance(fctx, "p", map[string]uint64{"process/t/a": 2})
	srv.Resume()
	if err == nil {
		t.Fatal("a write to a frozen server succeeded")
	}
	time.Sleep(200 * time.Millisecond) // the server runs the queued script
	for seq := uint64(2); seq <= 4; seq++ {
		if err := s.Advance(fctx, "p", map[string]uint64{"process/t/a": seq}); err != nil {
			t.Fatalf("write %d after the unknown outcome: %v", seq, err)
		}
	}
	if err := s.CheckState(fctx, "p"); err != nil {
		t.Errorf("CheckState = %v", err)
	}

	// go-redis's own retry: the first attempt times out while the server
	// is frozen, the second (sent once the first timed out) runs too.
	retrying := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 300 * time.Millisecond, MaxRetries: 2, MinRetryBackoff: 400 * time.Millisecond})
	t.Cleanup(func() { _ = retrying.Close() })
	s2, err := redischeckpoint.New(redischeckpoint.Config{Client: retrying})
	if err != nil {
		t.Fatal(err)
	}
	f2, err := s2.AcquireFence(ctx, "p", 1)
	if err != nil {
		t.Fatal(err)
	}
	f2ctx := controlplane.WithFence(ctx, f2)
	srv.Pause()
	go func() { time.Sleep(500 * time.Millisecond); srv.Resume() }()
	if err := s2.Advance(f2ctx, "p", map[string]uint64{"process/t/b": 1}); err != nil {
		t.Errorf("the write go-redis retried: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if n, _ := retrying.HGet(ctx, "projector:{p}:serials", "1").Result(); n != "2" {
		t.Errorf("serial %q after the retried write, want 2: the script did not run twice, the test shows nothing", n)
	}
	if err := s2.Advance(f2ctx, "p", map[string]uint64{"process/t/b": 2}); err != nil {
		t.Errorf("the write after a retried one: %v", err)
	}
}
