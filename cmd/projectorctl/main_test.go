package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// uniqueName returns prefix with a random suffix: a consumer group is
// cluster-wide, so every test (and every package tested in parallel) gets
// a projection, and so a group, of its own.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// fixture: a topic, a Redis namespace, a counting projection.
type fixture struct {
	t      *testing.T
	kafka  *testenv.KafkaEnv
	redis  *testenv.RedisEnv
	store  *kafkastore.Store
	rstore *redischeckpoint.Store
	ns     string
	name   string

	mu       sync.Mutex
	produced map[string]int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, testenv.Redis(t))
}

// newFixtureOn is newFixture on a given Redis (a server of the test's own,
// for faults).
func newFixtureOn(t *testing.T, r *testenv.RedisEnv) *fixture {
	t.Helper()
	k := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: k.Seeds, Topic: k.TopicName(t, "events"), Partitions: 4, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	ns := "ctl"
	if r.Kind != "private" {
		ns = r.Prefix(t)
	}
	rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: r.Client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, kafka: k, redis: r, store: store, rstore: rstore, ns: ns, name: uniqueName("counts"), produced: map[string]int64{}}
}

func (f *fixture) projection() *redischeckpoint.AtomicProjection {
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) produce(streams, n int) {
	f.t.Helper()
	data := make([]framework.EventData, n)
	for i := range data {
		data[i] = framework.EventData{Type: "Counted"}
	}
	for i := range streams {
		id := fmt.Sprintf("process/t/%04d", i)
		if _, err := f.store.Append(context.Background(), id, framework.AnyVersion, data); err != nil {
			f.t.Error(err)
			return
		}
		f.mu.Lock()
		f.produced[id] += int64(n)
		f.mu.Unlock()
	}
}

func (f *fixture) counts() map[string]int64 {
	raw, err := f.redis.Client.HGetAll(context.Background(), f.projection().Key("counts")).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int64{}
	for k, v := range raw {
		var n int64
		fmt.Sscan(v, &n)
		out[k] = n
	}
	return out
}

func (f *fixture) waitCounts(timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		want := maps.Clone(f.produced)
		f.mu.Unlock()
		got := f.counts()
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			diff := 0
			for id, n := range want {
				if got[id] != n {
					diff++
				}
			}
			f.t.Fatalf("after %v %d of %d streams differ from what was produced", timeout, diff, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type replica struct {
	r      *kafkarunner.Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// ignoringControl hides the control plane from a replica, so that it
// neither pauses nor leaves: a replica of an older version.
type ignoringControl struct{ cursorsWithProgress }

// cursorsWithProgress is the part of the control plane an older replica
// used: cursors and progress, no control.
type cursorsWithProgress interface {
	controlplane.CheckpointStore
	controlplane.ProgressStore
	controlplane.ParkStore
}

func (f *fixture) start(ignoreControl bool) *replica {
	f.t.Helper()
	var cps controlplane.CheckpointStore = f.rstore
	if ignoreControl {
		cps = ignoringControl{f.rstore}
	}
	r, err := kafkarunner.New(kafkarunner.Config{
		Seeds: f.kafka.Seeds, Topic: f.store.Config().Topic, Projection: f.projection(), Checkpoints: cps,
		Fencer: f.rstore, Events: f.store, FlushInterval: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rep.done <- r.Run(ctx) }()
	f.t.Cleanup(rep.stop)
	return rep
}

func (rep *replica) stop() {
	rep.once.Do(func() {
		rep.cancel()
		select {
		case <-rep.done:
		case <-time.After(time.Minute):
		}
	})
}

// ctl runs projectorctl against the fixture's servers.
func (f *fixture) ctl(stdin string, args ...string) (int, string, string) {
	f.t.Helper()
	base := []string{"--brokers", strings.Join(f.kafka.Seeds, ","), "--topic", f.store.Config().Topic,
		"--redis-url", "redis://" + f.redis.Addr, "--namespace", f.ns, "--by", "tester"}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := run(ctx, append(args, base...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func requireRealServers(t *testing.T, f *fixture) {
	t.Helper()
	if !f.kafka.Real || !f.redis.Real {
		if testenv.RequireReal() {
			t.Fatal("replays reset a real consumer group: needs a real Kafka and Redis (scripts/test.sh)")
		}
		t.Skip("replays reset a real consumer group: needs a real Kafka and Redis")
	}
}

// TestReplayWhileEventsKeepArriving rebuilds the read model with two
// replicas running and a producer appending throughout; at the end the
// read model equals exactly what was produced.
func TestReplayWhileEventsKeepArriving(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(100, 5)
	f.start(false)
	f.start(false)
	f.waitCounts(time.Minute)

	// Something only a reset removes: a key in the read model's namespace.
	sentinel := f.projection().Key("sentinel")
	if err := f.redis.Client.Set(context.Background(), sentinel, "old model", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var producing sync.WaitGroup
	producing.Go(func() {
		for !stop.Load() {
			f.produce(100, 1)
		}
	})
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait", "--empty-timeout", "1m", "--reason", "test")
	stop.Store(true)
	producing.Wait()
	if code != exitOK {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.waitCounts(time.Minute)
	if n, _ := f.redis.Client.Exists(context.Background(), sentinel).Result(); n != 0 {
		t.Error("the read model was not dropped: the sentinel key survived the replay")
	}
	ctl, err := f.rstore.Control(context.Background(), f.name)
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Paused || ctl.ResetDone != 1 || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayDone || ctl.Replay.By != "tester" {
		t.Errorf("control after the replay = %+v, replay %+v", ctl, ctl.Replay)
	}
	if epoch, _ := f.rstore.Epoch(context.Background(), f.name); epoch != 1 {
		t.Errorf("epoch = %d, want 1", epoch)
	}
	for _, want := range []string{"Replay plan", "offsets reset to start", "caught up with the topic"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// stderr is not a terminal: progress comes as lines, not redraws.
	if strings.Contains(errOut, "\r") || !strings.Contains(errOut, "rebuilding "+f.name+": 100.0% (") || !strings.Contains(errOut, "events/s, ETA") {
		t.Errorf("progress on a non-terminal:\n%q", errOut)
	}
}

// TestReplayRefusesWhenTheGroupDoesNotEmpty: a member that ignores the
// pause (a replica of an older version) keeps the group from emptying. The
// replay's first step raised the epoch already, so nothing can be given
// back: the command fails naming the member, the replay stays in phase
// pausing with the replicas paused, and the member that stayed writes
// nothing into the new epoch (its fence is stale). Once it is stopped,
// replay --resume completes the replay without raising the epoch again.
func TestReplayRefusesWhenTheGroupDoesNotEmpty(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(20, 2)
	old := f.start(true) // does not watch the control plane: never leaves
	f.waitCounts(time.Minute)
	before := f.counts()
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--empty-timeout", "3s")
	if code != exitRefused || !strings.Contains(errOut, "did not empty within 3s; members still present") || !strings.Contains(errOut, "replay --resume") {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s\nwant refused naming the members and how to go on", code, out, errOut)
	}
	ctl, _ := f.rstore.Control(context.Background(), f.name)
	if !ctl.Paused || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayPausing || !strings.Contains(ctl.Replay.Error, "did not empty") ||
		ctl.ResetEpoch != 1 || ctl.ResetDone != 0 {
		t.Errorf("after the refusal control = %+v (replay %+v); want paused, the replay in phase pausing and the reset of epoch 1 requested", ctl, ctl.Replay)
	}
	if epoch, _ := f.rstore.Epoch(context.Background(), f.name); epoch != 1 {
		t.Errorf("epoch %d after the replay's first step, want 1", epoch)
	}
	f.produce(20, 1)
	time.Sleep(2 * time.Second)
	if got := f.counts(); !maps.Equal(got, before) {
		t.Error("the member that stayed wrote into the new epoch")
	}
	old.stop()
	f.start(false)
	code, out, errOut = f.ctl("", "replay", f.name, "--resume", "--wait", "--empty-timeout", "1m")
	if code != exitOK {
		t.Fatalf("replay --resume exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.waitCounts(time.Minute) // rebuilt whole, nothing counted twice
	if epoch, _ := f.rstore.Epoch(context.Background(), f.name); epoch != 1 {
		t.Errorf("epoch %d after the resumed replay, want 1 (raised once)", epoch)
	}
	if ctl, _ := f.rstore.Control(context.Background(), f.name); ctl.Paused || ctl.ResetDone != 1 || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayDone {
		t.Errorf("control after the resumed replay = %+v (replay %+v)", ctl, ctl.Replay)
	}
}

func TestPauseHoldsAcrossAReplicaRestart(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(20, 2)
	rep := f.start(false)
	f.waitCounts(time.Minute)
	if code, out, errOut := f.ctl("", "pause", f.name, "--reason", "maintenance", "--wait"); code != exitOK {
		t.Fatalf("pause exit %d: %s %s", code, out, errOut)
	}
	rep.stop()
	before := f.counts()
	f.produce(20, 3)
	again := f.start(false)
	time.Sleep(2 * time.Second)
	if got := f.counts(); !maps.Equal(got, before) {
		t.Fatal("a restarted replica consumed while the projection was paused")
	}
	if again.r.State() != "paused" {
		t.Errorf("restarted replica state %q, want paused", again.r.State())
	}
	code, out, _ := f.ctl("", "status", f.name, "-o", "json")
	var st Status
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.State != "paused" || st.TotalLag == 0 || st.Control.PauseReason != "maintenance" {
		t.Errorf("status while paused: exit %d, %+v", code, st)
	}
	if code, _, errOut := f.ctl("", "resume", f.name, "--wait"); code != exitOK {
		t.Fatalf("resume exit %d: %s", code, errOut)
	}
	f.waitCounts(time.Minute)
}

func TestStatusParkedAndUsage(t *testing.T) {
	f := newFixture(t)
	f.produce(8, 2)
	f.start(false)
	f.waitCounts(time.Minute)
	time.Sleep(500 * time.Millisecond) // offsets committed
	code, out, errOut := f.ctl("", "status", f.name, "-o", "json")
	if code != exitOK {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	if st.State != "running" || len(st.Members) != 1 || len(st.Partitions) != 4 || st.Group != f.name {
		t.Errorf("status = %+v", st)
	}
	if code, out, _ := f.ctl("", "status", f.name); code != exitOK || !strings.Contains(out, "PARTITION") {
		t.Errorf("text status exit %d:\n%s", code, out)
	}
	if code, _, errOut := f.ctl("", "parked", "skip", f.name, "process/t/none", "--reason", "x"); code != exitNotFound {
		t.Errorf("skip of a stream that is not parked: exit %d %s, want %d", code, errOut, exitNotFound)
	}
	if code, out, _ := f.ctl("", "parked", "list", f.name, "-o", "json"); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("parked list = %d %q", code, out)
	}
	if code, _, _ := f.ctl("", "replay"); code != exitUsage {
		t.Errorf("replay without a projection: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := f.ctl("", "status", f.name, "--no-such-flag"); code != exitUsage {
		t.Errorf("an unknown flag: exit %d, want %d", code, exitUsage)
	}
	// Without --yes and without an answer, nothing happens.
	if code, _, errOut := f.ctl("", "replay", f.name); code != exitRefused || !strings.Contains(errOut, "--yes") {
		t.Errorf("replay without confirmation: exit %d %q", code, errOut)
	}
	code, out, _ = f.ctl("", "replay", f.name, "--dry-run", "--to-time", "2026-01-01T00:00:00Z")
	if code != exitOK || !strings.Contains(out, "dry run: nothing changed") || !strings.Contains(out, "time:2026-01-01T00:00:00Z") {
		t.Errorf("dry run: exit %d\n%s", code, out)
	}
	// Per partition, the committed offset and the one the replay would set
	// (all events are newer than the time: the start of each partition).
	if !strings.Contains(out, "CURRENT-OFFSET") || strings.Count(out, "  "+f.store.Config().Topic+" ") != 4 {
		t.Errorf("dry run does not show the 4 partitions' offsets:\n%s", out)
	}
	if ctl, _ := f.rstore.Control(context.Background(), f.name); ctl.Paused || ctl.Replay != nil {
		t.Errorf("a dry run or an unconfirmed replay changed the control state: %+v", ctl)
	}
}

// TestStatusShowsLostStateAndReplayRebuilds: Redis restarts without
// persistence under a projection whose offsets are committed. status names
// the partitions whose committed offsets rely on the lost state, the
// replica reports them stopped, and the documented remedy, a replay,
// rebuilds the read model exactly.
func TestStatusShowsLostStateAndReplayRebuilds(t *testing.T) {
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{})
	f := newFixtureOn(t, &testenv.RedisEnv{Client: srv.Client(t), Addr: srv.Addr, Real: true, Kind: "private"})
	requireRealServers(t, f)
	f.produce(40, 3)
	rep := f.start(false)
	f.waitCounts(time.Minute)
	deadline := time.Now().Add(time.Minute)
	for {
		_, out, _ := f.ctl("", "status", f.name, "-o", "json")
		var st Status
		_ = json.Unmarshal([]byte(out), &st)
		if st.TotalLag == 0 && len(st.Partitions) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep.stop()

	srv.Stop()
	srv.Start()
	f.start(false)
	deadline = time.Now().Add(time.Minute)
	var st Status
	for {
		_, out, _ := f.ctl("", "status", f.name, "-o", "json")
		st = Status{}
		_ = json.Unmarshal([]byte(out), &st)
		stopped := 0
		for _, r := range st.Replicas {
			for _, p := range r.Problems {
				if p.State == kafkarunner.PartitionStateLost {
					stopped++
				}
			}
		}
		if stopped == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica does not report 4 partitions state-lost:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lost := 0
	for _, p := range st.Partitions {
		if p.StateLost && p.Progress == -1 && p.Committed > 0 {
			lost++
		}
	}
	if lost != 4 {
		t.Errorf("status partitions %+v, want 4 with their committed offsets and no Redis progress", st.Partitions)
	}
	code, out, _ := f.ctl("", "status", f.name)
	if code != exitOK || strings.Count(out, "STATE LOST") != 4 || !strings.Contains(out, "replay the projection") {
		t.Errorf("text status:\n%s", out)
	}

	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait", "--empty-timeout", "1m", "--reason", "redis lost its data")
	if code != exitOK {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.waitCounts(time.Minute)
	code, out, _ = f.ctl("", "status", f.name, "-o", "json")
	st = Status{}
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || len(st.Problems) != 0 {
		t.Errorf("status after the replay: exit %d, problems %q", code, st.Problems)
	}
}
