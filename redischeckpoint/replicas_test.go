package redischeckpoint_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// replicatedPair starts a master and one replica of it (redis-server
// processes of the test's own) and waits until the replica is in sync.
func replicatedPair(t *testing.T) (master, replica *testenv.RedisServer) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("master and replica in sync after %v", time.Since(start)) }()
	// A replica's first sync starts at once, not after the default 5s.
	master = testenv.StartRedisServer(t, testenv.RedisServerOptions{Args: []string{"--repl-diskless-sync-delay", "0"}})
	host, port, _ := strings.Cut(master.Addr, ":")
	replica = testenv.StartRedisServer(t, testenv.RedisServerOptions{Args: []string{"--replicaof", host, port}})
	waitReplicas(t, master.Addr, 1)
	return master, replica
}

// waitReplicas waits until the server on addr has n replicas online.
func waitReplicas(t *testing.T, addr string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	want := fmt.Sprintf("connected_slaves:%d", n)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Info(t.Context(), "replication").Result()
		if err == nil && strings.Contains(info, want) && (n == 0 || strings.Contains(info, "state=online")) {
			// Online is not yet acknowledging: wait for a WAIT to see them.
			pipe := c.Pipeline()
			pipe.Incr(t.Context(), "replicas-probe")
			acked := pipe.Do(t.Context(), "WAIT", n, 1000)
			_, _ = pipe.Exec(t.Context())
			if got, _ := acked.Int(); got >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not %d replicas online: %v\n%s", addr, n, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitingStore(t *testing.T, c redis.UniversalClient, ns string, replicas int, timeout time.Duration) *redischeckpoint.Store {
	t.Helper()
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: c, Namespace: ns, WaitReplicas: replicas, WaitTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var replicaHeads = []controlplane.StreamHead{
	{StreamID: "process/t/a", Sequence: 3, EventID: "ev-a3", Position: &framework.Position{Partition: 0, Offset: 7}},
	{StreamID: "process/t/b", Sequence: 5, EventID: "ev-b5", Position: &framework.Position{Partition: 0, Offset: 9}},
}

// TestWaitReplicasConfig: a negative WaitReplicas or WaitTimeout, a
// timeout at or above the client's read timeout, and a client WAIT cannot
// be aimed with are refused.
func TestWaitReplicasConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: 2 * time.Second})
	defer c.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for _, tc := range []struct {
		cfg  redischeckpoint.Config
		want string
	}{
		{redischeckpoint.Config{Client: c, WaitReplicas: -1}, "WaitReplicas -1 is negative"},
		{redischeckpoint.Config{Client: c, WaitReplicas: 1, WaitTimeout: -time.Second}, "WaitTimeout -1s is negative"},
		{redischeckpoint.Config{Client: c, WaitReplicas: 1, WaitTimeout: 2 * time.Second}, "below the client's read timeout 2s"},
		{redischeckpoint.Config{Client: ring, WaitReplicas: 1}, "*redis.Ring"},
	} {
		if _, err := redischeckpoint.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []redischeckpoint.Config{{Client: c}, {Client: c, WaitReplicas: 2}, {Client: ring}} {
		if _, err := redischeckpoint.New(cfg); err != nil {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
}

// TestWaitReplicasCheckpointOnReplica: with WaitReplicas 1, the replica
// holds a checkpoint as soon as AdvancePartition returns.
func TestWaitReplicasCheckpointOnReplica(t *testing.T) {
	master, replica := replicatedPair(t)
	ctx := ctxFor(t)
	s := waitingStore(t, master.Client(t), "rep", 1, time.Second)
	if warnings, err := s.CheckServer(ctx); err != nil || containsWarning(warnings, "fewer than Config.WaitReplicas") {
		t.Errorf("CheckServer = %q, %v", warnings, err)
	}
	f, err := s.AcquireFence(ctx, "billing", 0)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	rc := replica.Client(t)
	for round := range int64(20) {
		heads := make([]controlplane.StreamHead, len(replicaHeads))
		for i, h := range replicaHeads {
			h.Sequence += uint64(round)
			heads[i] = h
		}
		if err := s.AdvancePartition(fctx, "billing", 0, heads, 10+round); err != nil {
			t.Fatalf("round %d: AdvancePartition = %v", round, err)
		}
		// Read at once from the replica: no polling.
		progress, err := rc.HGet(ctx, "rep:{billing}:progress", "0").Result()
		if err != nil || progress != fmt.Sprint(10+round) {
			t.Fatalf("round %d: progress on the replica = %q, %v; want %d", round, progress, err, 10+round)
		}
		for _, h := range heads {
			if cur, err := rc.HGet(ctx, "rep:{billing}:cursors", h.StreamID).Result(); err != nil || cur != fmt.Sprint(h.Sequence) {
				t.Fatalf("round %d: cursor of %s on the replica = %q, %v; want %d", round, h.StreamID, cur, err, h.Sequence)
			}
		}
		if token, err := rc.HGet(ctx, "rep:{billing}:fences", "0").Result(); err != nil || token != fmt.Sprint(f.Token) {
			t.Fatalf("fence on the replica = %q, %v; want %d", token, err, f.Token)
		}
	}
	// The unfenced path waits too.
	if err := s.Advance(ctx, "plain", map[string]uint64{"process/t/x": 4}); err != nil {
		t.Fatal(err)
	}
	if cur, err := rc.HGet(ctx, "rep:{plain}:cursors", "process/t/x").Result(); err != nil || cur != "4" {
		t.Errorf("unfenced cursor on the replica = %q, %v", cur, err)
	}
	// A script Redis does not know yet (after SCRIPT FLUSH): NOSCRIPT,
	// then EVAL in the same pipeline shape, and still replicated.
	if err := master.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvancePartition(fctx, "billing", 0, replicaHeads[:1], 100); err != nil {
		t.Fatalf("AdvancePartition after SCRIPT FLUSH = %v", err)
	}
	if progress, _ := rc.HGet(ctx, "rep:{billing}:progress", "0").Result(); progress != "100" {
		t.Errorf("progress on the replica after SCRIPT FLUSH = %q, want 100", progress)
	}
	// A fenced script that fails does not report replication: its own error.
	stale := f
	stale.Token--
	if err := s.AdvancePartition(controlplane.WithFence(ctx, stale), "billing", 0, replicaHeads, 200); !errors.Is(err, controlplane.ErrFenced) {
		t.Errorf("stale AdvancePartition = %v, want ErrFenced", err)
	}
}

func containsWarning(warnings []string, part string) bool {
	for _, w := range warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// TestWaitReplicasStalledReplica: a stopped replica makes every checkpoint
// fail with ErrNotReplicated within about WaitTimeout, naming 0 of 1;
// once it runs again, checkpoints succeed.
func TestWaitReplicasStalledReplica(t *testing.T) {
	master, replica := replicatedPair(t)
	ctx := ctxFor(t)
	const timeout = 300 * time.Millisecond
	s := waitingStore(t, master.Client(t), "rep", 1, timeout)
	f, err := s.AcquireFence(ctx, "billing", 0)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	if err := s.AdvancePartition(fctx, "billing", 0, replicaHeads, 10); err != nil {
		t.Fatal(err)
	}

	replica.Pause()
	resumed := false
	defer func() {
		if !resumed {
			replica.Resume()
		}
	}()
	start := time.Now()
	err = s.AdvancePartition(fctx, "billing", 0, replicaHeads, 11)
	took := time.Since(start)
	if !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Fatalf("AdvancePartition with the replica stopped = %v, want ErrNotReplicated", err)
	}
	var nre *redischeckpoint.NotReplicatedError
	if !errors.As(err, &nre) || nre.Acked != 0 || nre.Wanted != 1 || nre.Timeout != timeout {
		t.Errorf("error %#v", nre)
	}
	if msg := err.Error(); !strings.Contains(msg, "0 of 1 replicas within 300ms") || !strings.Contains(msg, "checkpoint of partition 0") {
		t.Errorf("message %q does not name 0 of 1 replicas within 300ms", msg)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("AdvancePartition returned after %v, want about %v", took, timeout)
	}
	t.Logf("not replicated after %v: %v", took, err)
	// The checkpoint is on the master (the write is not undone) and the
	// guard counted it: the next write is not taken for lost state.
	if p, err := s.Progress(ctx, "billing", 0); err != nil || p.Next != 11 {
		t.Errorf("progress on the master = %+v, %v", p, err)
	}
	if err := s.Advance(ctx, "plain", map[string]uint64{"process/t/x": 1}); !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Errorf("unfenced Advance with the replica stopped = %v, want ErrNotReplicated", err)
	}
	if _, err := s.AcquireFence(ctx, "billing", 1); !errors.Is(err, redischeckpoint.ErrNotReplicated) || !strings.Contains(err.Error(), "fence of partition 1") {
		t.Errorf("AcquireFence with the replica stopped = %v, want ErrNotReplicated", err)
	}
	// The admin plane's writes that replicas act on wait too: a replay's
	// epoch, the versions registry (of another projection: the epoch is
	// raised on the master, and would fence billing's writes below).
	if _, err := s.BumpEpoch(ctx, "other"); !errors.Is(err, redischeckpoint.ErrNotReplicated) || !strings.Contains(err.Error(), "the epoch") {
		t.Errorf("BumpEpoch with the replica stopped = %v, want ErrNotReplicated", err)
	}
	if _, err := s.BeginReplay(ctx, "other", 0, "test", "stalled replica", nil); !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Errorf("BeginReplay with the replica stopped = %v, want ErrNotReplicated", err)
	}
	if _, err := s.StartRebuild(ctx, "other", controlplane.Rebuild{By: "test"}); !errors.Is(err, redischeckpoint.ErrNotReplicated) || !strings.Contains(err.Error(), "versions registry") {
		t.Errorf("StartRebuild with the replica stopped = %v, want ErrNotReplicated", err)
	}

	replica.Resume()
	resumed = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.AdvancePartition(fctx, "billing", 0, replicaHeads, 12)
		if err == nil {
			break
		}
		if !errors.Is(err, redischeckpoint.ErrNotReplicated) || time.Now().After(deadline) {
			t.Fatalf("AdvancePartition after SIGCONT = %v", err)
		}
	}
	if progress, err := replica.Client(t).HGet(ctx, "rep:{billing}:progress", "0").Result(); err != nil || progress != "12" {
		t.Errorf("progress on the replica = %q, %v; want 12", progress, err)
	}
	if err := s.CheckState(fctx, "billing"); err != nil {
		t.Errorf("CheckState = %v", err)
	}
}

// TestWaitReplicasSurviveFailover: after a checkpoint returned, the master
// dies and its replica is promoted: the new master holds the checkpoint
// and the fence, and the fence's holder keeps writing without being taken
// for lost state.
func TestWaitReplicasSurviveFailover(t *testing.T) {
	master, replica := replicatedPair(t)
	ctx := ctxFor(t)
	// The client dials whatever addr holds: the master, then the
	// promoted replica.
	var addr atomic.Value
	addr.Store(master.Addr)
	c := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1, Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr.Load().(string))
	}})
	t.Cleanup(func() { _ = c.Close() })
	s := waitingStore(t, c, "rep", 1, time.Second)
	f, err := s.AcquireFence(ctx, "billing", 3)
	if err != nil {
		t.Fatal(err)
	}
	fctx := controlplane.WithFence(ctx, f)
	for i := range int64(50) {
		if err := s.AdvancePartition(fctx, "billing", 3, replicaHeads, 100+i); err != nil {
			t.Fatal(err)
		}
	}
	wantHeads, err := s.Heads(ctx, "billing", []string{"process/t/a", "process/t/b"})
	if err != nil {
		t.Fatal(err)
	}

	master.Kill()
	rc := replica.Client(t)
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	promoted := waitingStore(t, rc, "rep", 0, 0)
	p, err := promoted.Progress(ctx, "billing", 3)
	if err != nil || p != (controlplane.PartitionProgress{Next: 149, Recorded: true}) {
		t.Errorf("progress on the promoted replica = %+v, %v; want 149", p, err)
	}
	heads, err := promoted.Heads(ctx, "billing", []string{"process/t/a", "process/t/b"})
	if err != nil || fmt.Sprint(heads) != fmt.Sprint(wantHeads) {
		t.Errorf("heads on the promoted replica = %v, %v; want %v", heads, err, wantHeads)
	}
	if err := promoted.CheckFence(ctx, f); err != nil {
		t.Errorf("the fence did not survive the failover: %v", err)
	}
	// The write serial survived as well: the fence's holder, whose client
	// now reaches the promoted replica (as a Sentinel client would), finds
	// every write it made: it is not stopped as state-lost.
	addr.Store(replica.Addr)
	var cerr error
	for range 5 { // the pooled connections to the dead master fail first
		if cerr = s.CheckState(fctx, "billing"); cerr == nil || errors.Is(cerr, controlplane.ErrStateLost) {
			break
		}
	}
	if cerr != nil {
		t.Errorf("the fence holder's CheckState after the failover = %v", cerr)
	}
	// The promoted replica has no replica of its own: checkpoints are
	// stored but not confirmed, and nothing is committed (the trade-off:
	// a stall, never a loss).
	if err := s.AdvancePartition(fctx, "billing", 3, replicaHeads, 150); !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Errorf("the fence holder's AdvancePartition after the failover = %v, want ErrNotReplicated (no replicas left)", err)
	}
	if p, err := promoted.Progress(ctx, "billing", 3); err != nil || p.Next != 150 {
		t.Errorf("progress after the failover = %+v, %v; want 150", p, err)
	}
}

// TestWaitReplicasCluster: on a Redis Cluster, the checkpoint script and
// WAIT run on the master of the projection's slot. One master gets a
// replica: WaitReplicas 1 succeeds for a projection on it and fails with 0
// of 1 for one on another master; WaitReplicas 0 works everywhere.
func TestWaitReplicasCluster(t *testing.T) {
	client := startCluster(t)
	ctx := ctxFor(t)
	first, err := client.MasterForKey(ctx, "wr:{p0}:meta")
	if err != nil {
		t.Fatal(err)
	}
	addReplica(t, first)

	// Projections on that master and on another one.
	var on, off string
	for i := 0; on == "" || off == ""; i++ {
		name := fmt.Sprintf("p%d", i)
		m, err := client.MasterForKey(ctx, "wr:{"+name+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		if m.Options().Addr == first.Options().Addr {
			if on == "" {
				on = name
			}
		} else if off == "" {
			off = name
		}
	}
	plain := waitingStore(t, client, "wr", 0, 0)
	s := waitingStore(t, client, "wr", 1, 500*time.Millisecond)
	for _, name := range []string{on, off} {
		// Fences taken without waiting, so that the one of off exists.
		f, err := plain.AcquireFence(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		fctx := controlplane.WithFence(ctx, f)
		if err := plain.AdvancePartition(fctx, name, 0, replicaHeads, 5); err != nil {
			t.Fatalf("%s: AdvancePartition without waiting = %v", name, err)
		}
		err = s.AdvancePartition(fctx, name, 0, replicaHeads, 6)
		switch name {
		case on:
			if err != nil {
				t.Errorf("%s (on the replicated master): AdvancePartition = %v", name, err)
			}
		case off:
			if !errors.Is(err, redischeckpoint.ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1") {
				t.Errorf("%s (on a master without replicas): AdvancePartition = %v, want ErrNotReplicated naming 0 of 1", name, err)
			}
		}
		if p, err := plain.Progress(ctx, name, 0); err != nil || p.Next != 6 {
			t.Errorf("%s: progress = %+v, %v; want 6 (written on the master either way)", name, p, err)
		}
	}
	if _, err := s.AcquireFence(ctx, on, 1); err != nil {
		t.Errorf("AcquireFence on the replicated master = %v", err)
	}
	if _, err := s.AcquireFence(ctx, off, 1); !errors.Is(err, redischeckpoint.ErrNotReplicated) {
		t.Errorf("AcquireFence on a master without replicas = %v, want ErrNotReplicated", err)
	}
	if warnings, err := s.CheckServer(ctx); err != nil || !containsWarning(warnings, "0 connected replicas, fewer than Config.WaitReplicas 1") {
		t.Errorf("CheckServer = %q, %v; want a warning about the masters without replicas", warnings, err)
	}
}

// addReplica adds a cluster node of the test's own as a replica of master
// and waits until it is in sync.
func addReplica(t *testing.T, master *redis.Client) {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli must be on PATH (scripts/test.sh installs it): %v", err)
	}
	ctx := ctxFor(t)
	id, err := master.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	if err := master.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	node := testenv.StartRedisServer(t, testenv.RedisServerOptions{Args: []string{"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes.conf")}})
	out, err := exec.CommandContext(ctx, cli, "--cluster", "add-node", node.Addr, master.Options().Addr,
		"--cluster-slave", "--cluster-master-id", id).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster add-node: %v\n%s", err, out)
	}
	waitReplicas(t, master.Options().Addr, 1)
}
