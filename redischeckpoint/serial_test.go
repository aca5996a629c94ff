package redischeckpoint_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/tcpproxy"
	"github.com/projector-dev/projector/internal/testenv"
)

// TestLostWriteBehindAnUncountedWrite: a write whose reply was lost (a read
// timeout, a reset) may still have run and raised the partition's write
// serial; the writer cannot count it. The fault suite found that such a
// write hid a later loss: Redis restarted from an AOF that missed an
// acknowledged apply (appendfsync everysec postpones the write while an
// fsync runs, and replies anyway), the serial it held was still at the
// writer's count because the uncounted write had raised it, the next
// checkpoint raised the stream's cursor past the lost event, and the
// stream went on without it: a silent hole. The writer's count must be
// exact: every write reports the serial it set.
//
// Here the reply of an apply is delayed past the client's read timeout by
// a proxy (the apply runs; its reply is lost), the next apply is
// acknowledged, and Redis is then restarted from a copy of its AOF taken
// between the two: the acknowledged apply is lost. The checkpoint that
// would raise the cursor over it must be refused as state lost.
func TestLostWriteBehindAnUncountedWrite(t *testing.T) {
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{AppendOnly: true, Args: []string{"--appendfsync", "always"}})
	px, err := tcpproxy.New(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	client := redis.NewClient(&redis.Options{Addr: px.Addr, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	s, p := counting(t, client, "serial")
	ctx := t.Context()
	f, err := s.AcquireFence(ctx, "counter", 3)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	ev := func(seq uint64) framework.Event {
		return framework.Event{StreamID: "process/s/1", Sequence: seq, EventID: "e" + strconv.FormatUint(seq, 10), Type: "Counted"}
	}
	direct := srv.Client(t)
	serial := func() int64 {
		n, _ := direct.HGet(ctx, "serial:{counter}:serials", "3").Int64()
		return n
	}
	if err := p.Apply(fctx, ev(1)); err != nil {
		t.Fatal(err)
	}
	// An uncounted write: the apply of event 1 again (a duplicate: only
	// the serial moves) whose reply is lost.
	before := serial()
	px.SetLatency(500 * time.Millisecond)
	if err := p.Apply(fctx, ev(1)); err == nil {
		t.Fatal("an apply whose reply came after the read timeout succeeded")
	}
	for deadline := time.Now().Add(5 * time.Second); serial() == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delayed apply never ran")
		}
	}
	px.SetLatency(0)
	time.Sleep(600 * time.Millisecond) // the delayed reply drains

	// The durable state Redis will restart from: up to here.
	snapshot := t.TempDir()
	copyDir(t, filepath.Join(srv.Dir, "appendonlydir"), filepath.Join(snapshot, "appendonlydir"))

	// Event 2, acknowledged: lost by the restart below.
	if err := p.Apply(fctx, ev(2)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := os.RemoveAll(filepath.Join(srv.Dir, "appendonlydir")); err != nil {
		t.Fatal(err)
	}
	copyDir(t, filepath.Join(snapshot, "appendonlydir"), filepath.Join(srv.Dir, "appendonlydir"))
	srv.Start()
	if n, _ := direct.HGet(ctx, p.Key("counts"), "process/s/1").Int64(); n != 1 {
		t.Fatalf("after the restart the read model counts %d events, want 1 (event 2 lost)", n)
	}

	heads := []controlplane.StreamHead{{StreamID: "process/s/1", Sequence: 2, EventID: "e2", Position: &framework.Position{Partition: 3, Offset: 2}}}
	err = s.AdvancePartition(fctx, "counter", 3, heads, 3)
	if !errors.Is(err, controlplane.ErrStateLost) {
		cursor, _ := direct.HGet(ctx, "serial:{counter}:cursors", "process/s/1").Result()
		t.Fatalf("checkpoint over a lost apply = %v (cursor now %q), want ErrStateLost: the stream would go on without event 2", err, cursor)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v %s", from, to, err, out)
	}
}
