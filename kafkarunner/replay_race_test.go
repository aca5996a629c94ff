package kafkarunner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// The tests of this file play projectorctl replay (to the start) with the
// store's control API, step by step, against replicas of the runner: the
// order of the steps is the replay's protocol (docs/design.md, "Replay"):
//
//  1. begin: in one script, pause, raise the epoch (clearing cursors,
//     heads, progress and parks; the progress baseline is the start
//     offsets) and request the reset of the read model for the new epoch;
//  2. wait until the group is empty, then reset its offsets to the start
//     offsets recorded in step 1;
//  3. unpause: one replica claims the reset, drops the read model (each
//     delete checks its claim), the replicas rebuild.

// startOffsets lists where each partition of the fixture's topic starts.
func (f *fixture) startOffsets(t *testing.T) map[int32]int64 {
	t.Helper()
	listed, err := f.env.Admin(t).ListStartOffsets(ctxFor(t), f.store.Config().Topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// beginReplay is the replay's first step: pause, raise the epoch and
// request the reset, in one script. It returns the new epoch and the start
// offsets recorded as its progress baseline.
func (f *fixture) beginReplay(t *testing.T) (uint64, map[int32]int64) {
	t.Helper()
	ctx := ctxFor(t)
	from, err := f.rstore.Epoch(ctx, f.name)
	if err != nil {
		t.Fatal(err)
	}
	start := f.startOffsets(t)
	begun, err := f.rstore.BeginReplay(ctx, f.name, from, "test", "replay test", start)
	if err != nil {
		t.Fatal(err)
	}
	if !begun.Raised || begun.Epoch != from+1 {
		t.Fatalf("BeginReplay from epoch %d = %+v, want the epoch raised to %d", from, begun, from+1)
	}
	return begun.Epoch, start
}

// waitGroupEmpty waits until the fixture's consumer group has no member.
func (f *fixture) waitGroupEmpty(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "the group empties", func() (bool, string) {
		described, err := f.env.Admin(t).DescribeGroups(ctxFor(t), f.name)
		if err != nil {
			return false, err.Error()
		}
		g := described[f.name]
		return len(g.Members) == 0, fmt.Sprintf("%d members", len(g.Members))
	})
}

// resetOffsets commits start for the (empty) group.
func (f *fixture) resetOffsets(t *testing.T, start map[int32]int64) {
	t.Helper()
	offsets := kadm.Offsets{}
	for p, at := range start {
		offsets.Add(kadm.Offset{Topic: f.store.Config().Topic, Partition: p, At: at, LeaderEpoch: -1})
	}
	resp, err := f.env.Admin(t).CommitOffsets(ctxFor(t), f.name, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("reset the offsets of the empty group: %v", err)
	}
}

func (f *fixture) setPaused(t *testing.T, paused bool) {
	t.Helper()
	if err := f.rstore.SetPaused(ctxFor(t), f.name, paused, "test", "replay test"); err != nil {
		t.Fatal(err)
	}
}

// committedOffsets returns the group's committed offsets by partition
// (partitions without one are absent).
func (f *fixture) committedOffsets(t *testing.T) map[int32]int64 {
	t.Helper()
	fetched, err := f.env.Admin(t).FetchOffsets(ctxFor(t), f.name)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// holdReplica makes the replica named id stop once, after it read the
// control state and decided to consume, before it joins the group: reached
// is closed when it got there; it goes on once release is called.
func holdReplica(t *testing.T, id string) (reached <-chan struct{}, release func()) {
	t.Helper()
	at, gate := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	restore := kafkarunner.SetAfterControlRead(func(replica string) {
		if replica != id {
			return
		}
		once.Do(func() {
			close(at)
			<-gate
		})
	})
	release = func() { released.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); restore() })
	return at, release
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

// TestReplayJoinRace forces the race of issue 15 (finding 1): a replica
// reads "not paused", and joins the group only while a replay is under
// way, at each step of it. Before, a replica that joined between the epoch
// bump and the reset request fenced itself in the new epoch, applied and
// committed, and then the reset wiped what it had applied: the read model
// lacked events whose offsets were committed, with lag 0. Now the epoch,
// the pause and the reset request are one step, every write of the new
// epoch is refused until the reset is done, and a refused replica leaves
// the group: at the end every event counts exactly once.
func TestReplayJoinRace(t *testing.T) {
	for _, joinAfter := range []string{"begin", "offsets", "unpause"} {
		t.Run("JoinsAfter-"+joinAfter, func(t *testing.T) { testJoinRace(t, joinAfter) })
	}
}

func testJoinRace(t *testing.T, joinAfter string) {
	f := newFixture(t, 3)
	want := f.produce(t, 30, 3, "process/t/")
	p := f.counter(t)
	quick := func(c *kafkarunner.Config) { fast(c); c.ControlRefresh = 200 * time.Millisecond }
	f.start(t, p, quick)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)

	// A replica starting now reads the control state (not paused) and is
	// slow to join.
	reached, release := holdReplica(t, "late")
	logs := &logRecorder{}
	// Its control reads are rare: what it meets in the group, not its
	// next read, must make it leave.
	late := f.start(t, p, func(c *kafkarunner.Config) {
		fast(c)
		c.ReplicaID, c.ControlRefresh, c.Logger = "late", 3*time.Second, slog.New(logs)
	})
	waitClosed(t, reached, "the late replica reads the control state")

	var epoch uint64
	var start map[int32]int64
	steps := []struct {
		name string
		run  func()
	}{
		{"begin", func() { epoch, start = f.beginReplay(t) }},
		{"offsets", func() { f.waitGroupEmpty(t); f.resetOffsets(t, start) }},
		{"unpause", func() { f.setPaused(t, false) }},
	}
	for _, step := range steps {
		step.run()
		if step.name != joinAfter {
			continue
		}
		// The late replica joins now, with what it read before the
		// replay began.
		release()
		waitFor(t, 30*time.Second, "the late replica joins", func() (bool, string) {
			return len(late.r.Assigned()) > 0 || late.r.State() != "running", late.r.State()
		})
		time.Sleep(time.Second) // it applies and flushes what it may
	}

	// Events keep arriving during the rebuild.
	for id, n := range f.produce(t, 30, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 2*time.Minute)
	f.waitCommitted(t)
	f.settle(t, p, want)
	ctl, err := f.rstore.Control(ctxFor(t), f.name)
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Paused || ctl.ResetEpoch != epoch || ctl.ResetDone != epoch {
		t.Errorf("control after the replay = %+v, want resumed and the reset of epoch %d done", ctl, epoch)
	}
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 0 {
		t.Errorf("parked during the replay: %+v", parked)
	}
	// What the late replica met is expected: refusals, logged as such,
	// never taken for lost state.
	if bad := logs.find(slog.LevelWarn, append(replayWords, "store lost")...); len(bad) > 0 {
		t.Errorf("the late replica logged the replay's refusals as problems:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("the late replica:\n%s", strings.Join(logs.find(slog.LevelInfo, "replay began", "final flush", "reset", "leaving"), "\n"))
}

// TestResetPendingReplicaLeavesAndRejoins: a replica that joins while a
// reset is pending (it read the control state before the replay began)
// has its writes refused; it must leave the group at once, reset the read
// model itself and consume, not retry its partitions until its next read
// of the control state (a minute here). Before, its partitions failed and
// restarted with backoff until then.
func TestResetPendingReplicaLeavesAndRejoins(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 30, 3, "process/t/")
	p := f.counter(t)
	sentinel := p.Key("sentinel")
	if err := f.rdb.Set(ctxFor(t), sentinel, "old model", 0).Err(); err != nil {
		t.Fatal(err)
	}
	reached, release := holdReplica(t, "late")
	logs := &logRecorder{}
	f.start(t, p, func(c *kafkarunner.Config) {
		fast(c)
		c.ReplicaID = "late"
		c.ControlRefresh = time.Minute
		c.Logger = slog.New(logs)
	})
	waitClosed(t, reached, "the replica reads the control state")

	epoch, start := f.beginReplay(t)
	f.resetOffsets(t, start)
	f.setPaused(t, false)
	release()

	f.waitCounts(t, p, want, 30*time.Second)
	if n, _ := f.rdb.Exists(ctxFor(t), sentinel).Result(); n != 0 {
		t.Error("the read model was not reset: the sentinel key survived")
	}
	ctl, err := f.rstore.Control(ctxFor(t), f.name)
	if err != nil || ctl.ResetDone != epoch {
		t.Errorf("control = %+v, %v; want the reset of epoch %d done", ctl, err, epoch)
	}
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 0 {
		t.Errorf("parked: %+v", parked)
	}
	f.waitCommitted(t)
	if bad := logs.find(slog.LevelWarn, replayWords...); len(bad) > 0 {
		t.Errorf("a refusal the replay causes was logged as a problem:\n%s", strings.Join(bad, "\n"))
	}
}

// TestReplayPauseRefusesFinalFlush: a replica is retrying a failing event
// when a replay begins. The epoch is raised before the replica leaves, so
// its final flush (which would store the cursors of the events it applied
// before the failing one and commit up to it) is refused: nothing is
// parked, no offset is committed, and the refusal is logged as expected,
// not as a warning. Then the replay resets the offsets and the replica
// rebuilds the model whole.
func TestReplayPauseRefusesFinalFlush(t *testing.T) {
	f := newFixture(t, 2)
	want := f.produce(t, 10, 2, "process/t/")
	const id = "process/t/00003"
	if _, err := f.store.Append(ctxFor(t), id, framework.AnyVersion, []framework.EventData{{Type: "Poison"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	want[id] += 2
	var buggy atomic.Bool
	buggy.Store(true)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && buggy.Load() {
			return errors.New("poison")
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	rep := f.start(t, p, func(c *kafkarunner.Config) {
		fast(c)
		c.ControlRefresh = 200 * time.Millisecond
		c.Retry = kafkarunner.RetryPolicy{Attempts: 1_000_000, Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond}
		c.Logger = slog.New(logs)
	})
	waitFor(t, time.Minute, "a partition retries the poison event", func() (bool, string) {
		return len(logs.find(slog.LevelWarn, "apply failed; retrying")) > 0, fmt.Sprint(partitionStates(rep.r))
	})
	time.Sleep(time.Second) // the other partition flushed and committed
	committed := f.committedOffsets(t)

	_, start := f.beginReplay(t)
	f.waitGroupEmpty(t)
	if got := f.committedOffsets(t); !maps.Equal(got, committed) {
		t.Errorf("committed offsets moved while the replica left: %v, before %v", got, committed)
	}
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 0 {
		t.Errorf("parked while leaving: %+v", parked)
	}
	if bad := logs.find(slog.LevelWarn, replayWords...); len(bad) > 0 {
		t.Errorf("the refused final flush was logged as a problem:\n%s", strings.Join(bad, "\n"))
	}
	if refused := logs.find(slog.LevelInfo, "refused"); len(refused) == 0 {
		t.Errorf("the refused final flush was not logged; the log:\n%s", strings.Join(logs.find(slog.LevelDebug), "\n"))
	}

	buggy.Store(false)
	f.resetOffsets(t, start)
	f.setPaused(t, false)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 0 {
		t.Errorf("parked after the replay: %+v", parked)
	}
}

// logRecorder is a slog handler that keeps every record as a line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	level []slog.Level
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, b.String())
	h.level = append(h.level, r.Level)
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// find returns the lines at level or above that contain one of texts (any
// line when none is given).
func (h *logRecorder) find(level slog.Level, texts ...string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for i, l := range h.lines {
		if h.level[i] < level {
			continue
		}
		match := len(texts) == 0
		for _, text := range texts {
			match = match || strings.Contains(strings.ToLower(l), text)
		}
		if match {
			out = append(out, l)
		}
	}
	return out
}

// replayWords are what a log line about a refusal a replay causes says.
var replayWords = []string{"fenc", "reset", "flush", "refused", "epoch"}
