package ops_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/ops"
)

// newClient returns an ops client on an in-memory control plane and an
// in-process Kafka whose topic "events" has 3 partitions holding 4, 2 and
// 0 records.
func newClient(t *testing.T) (*ops.Client, *memcontrol.Store, *kadm.Client) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for p, n := range map[int32]int{0: 4, 1: 2} {
		for range n {
			if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "events", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := memcontrol.NewStore()
	adm := kadm.NewClient(cl)
	c, err := ops.New(ops.Config{Admin: store, Checkpoints: store, Kafka: adm, Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	return c, store, adm
}

func TestStatusPauseResume(t *testing.T) {
	c, store, _ := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if st.Projection != "billing" || st.Group != "billing" || st.Topic != "events" || st.State != ops.StateStopped ||
		len(st.Partitions) != 3 || st.TotalLag != 6 || len(st.Problems) != 0 {
		t.Errorf("status = %+v", st)
	}
	if _, err := c.Pause(ctx, "billing", "tester", "maintenance"); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx, "billing"); st.State != ops.StatePaused || st.Control.PauseReason != "maintenance" || st.Control.PausedBy != "tester" {
		t.Errorf("status while paused = %+v", st)
	}
	// A replay in progress: resuming is refused.
	if err := store.SetReplay(ctx, "billing", &controlplane.Replay{ID: "r1", Phase: controlplane.ReplayResetting}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resume(ctx, "billing", "tester", ""); !errors.Is(err, ops.ErrRefused) || !strings.Contains(err.Error(), "replay --resume or --abort") {
		t.Errorf("resume during a replay: %v", err)
	}
	if st, _ := c.Status(ctx, "billing"); st.State != ops.StateReplaying {
		t.Errorf("state during a replay = %q", st.State)
	}
	a, err := c.AbortReplay(ctx, "billing", "tester")
	if err != nil || a.Phase != controlplane.ReplayResetting || !a.OffsetsPartlyReset || a.EpochRaised || a.Replay.Phase != controlplane.ReplayAborted {
		t.Fatalf("abort = %+v, %v", a, err)
	}
	if _, err := c.AbortReplay(ctx, "billing", "tester"); !errors.Is(err, ops.ErrRefused) {
		t.Errorf("a second abort: %v", err)
	}
	if _, err := c.Resume(ctx, "billing", "tester", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitEmpty(ctx, "billing", time.Second); err != nil {
		t.Errorf("WaitEmpty of a group without members: %v", err)
	}
	if err := c.WaitMembers(ctx, "billing", 300*time.Millisecond); !errors.Is(err, ops.ErrRefused) {
		t.Errorf("WaitMembers of a group without members: %v", err)
	}
	if _, err := c.Status(ctx, "billing@v7"); !errors.Is(err, ops.ErrNotFound) {
		t.Errorf("status of a version that does not exist: %v", err)
	}
	if _, err := c.Resolve(ctx, ops.ResolveRequest{Projection: "billing", StreamID: "process/t/none", Action: controlplane.ResolveRetry, By: "tester"}); !errors.Is(err, ops.ErrNotFound) {
		t.Errorf("retry of a stream that is not parked: %v", err)
	}
}

// TestReplayToTheStart runs the replay state machine without replicas:
// the epoch is raised once, the offsets go to the start, the reset is
// requested, and the replay is done; a replay to a time that would move
// offsets forward is refused and recorded as failed.
func TestReplayToTheStart(t *testing.T) {
	c, store, adm := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var steps []ops.ReplayStep
	req := ops.ReplayRequest{Projection: "billing", By: "tester", Reason: "test", EmptyTimeout: time.Second,
		OnEvent: func(e ops.ReplayEvent) { steps = append(steps, e.Step) }}
	plan, err := c.PlanReplay(ctx, req)
	if err != nil || plan.KeepModel || plan.Epoch != 0 || plan.Status.TotalLag != 6 || plan.Check() != nil {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	moves, err := c.OffsetMoves(ctx, plan)
	if err != nil || len(moves) != 3 || moves[0].Current != -1 || moves[0].New != 0 {
		t.Errorf("offset moves = %+v, %v", moves, err)
	}
	rec, err := c.Replay(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []ops.ReplayStep{ops.ReplayStarted, ops.ReplayEpochRaised, ops.ReplayWaitingEmpty, ops.ReplayOffsetsReset, ops.ReplayResumed}
	if strings.Join(stepNames(steps), ",") != strings.Join(stepNames(want), ",") {
		t.Errorf("steps %v, want %v", steps, want)
	}
	ctl, _ := store.Control(ctx, "billing")
	if rec.To != "start" || rec.Epoch != 1 || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayDone || ctl.Paused || ctl.ResetEpoch != 1 {
		t.Errorf("after the replay: record %+v, control %+v (replay %+v)", rec, ctl, ctl.Replay)
	}
	committed, err := adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := committed.Lookup("events", 0); !ok || o.At != 0 {
		t.Errorf("partition 0 committed %+v, want 0", o)
	}

	// To a time: nothing was processed since, so the offsets would move
	// forward past 4 and 2 unprocessed events.
	future := time.Now().Add(time.Hour)
	req.Target = ops.FromTime(future)
	if _, err := c.Replay(ctx, req); !errors.Is(err, ops.ErrRefused) || !strings.Contains(err.Error(), "would move offsets forward") {
		t.Fatalf("forward replay: %v", err)
	}
	ctl, _ = store.Control(ctx, "billing")
	if ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayFailed || !ctl.Replay.KeepModel || ctl.Paused ||
		ctl.Replay.To != "time:"+future.UTC().Format(time.RFC3339Nano) {
		t.Errorf("after the refused replay: %+v (replay %+v)", ctl, ctl.Replay)
	}
	if _, err := c.ResumeReplay(ctx, req); !errors.Is(err, ops.ErrRefused) {
		t.Errorf("resume without an interrupted replay: %v", err)
	}
}

func stepNames(steps []ops.ReplayStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = string(s)
	}
	return out
}

// TestRebuildStartStatusAbort: a rebuild is planned, started, shown and
// aborted; a second one and a replay meanwhile are refused.
func TestRebuildStartStatusAbort(t *testing.T) {
	c, _, _ := newClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	plan, err := c.PlanRebuild(ctx, "billing", false, false)
	if err != nil || plan.Next != 1 || plan.NextName != "billing@v1" || plan.NextGroup != "billing@v1" || plan.Records != 6 || plan.Truncated != "" {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	if _, err := c.StartRebuild(ctx, ops.RebuildRequest{Projection: "billing", By: "tester"}); !errors.Is(err, ops.ErrInvalid) {
		t.Errorf("a rebuild without grace: %v", err)
	}
	r, err := c.StartRebuild(ctx, ops.RebuildRequest{Projection: "billing", By: "tester", Grace: time.Minute})
	if err != nil || r.Version != 1 {
		t.Fatalf("start = %+v, %v", r, err)
	}
	if _, err := c.PlanRebuild(ctx, "billing", false, false); !errors.Is(err, ops.ErrRefused) || !strings.Contains(err.Error(), "in progress") {
		t.Errorf("a second rebuild: %v", err)
	}
	if p, err := c.PlanRebuild(ctx, "billing", true, false); err != nil || p.Building == nil || p.Building.Version != 1 {
		t.Errorf("a rebuild to follow: %+v, %v", p, err)
	}
	if _, err := c.StartRebuild(ctx, ops.RebuildRequest{Projection: "billing", By: "tester", Grace: time.Minute}); !errors.Is(err, ops.ErrRefused) {
		t.Errorf("a second rebuild started: %v", err)
	}
	if _, err := c.PlanReplay(ctx, ops.ReplayRequest{Projection: "billing"}); !errors.Is(err, ops.ErrRefused) || !strings.Contains(err.Error(), "rebuild of billing to v1 is in progress") {
		t.Errorf("a replay during a rebuild: %v", err)
	}
	st, err := c.RebuildStatus(ctx, "billing")
	if err != nil || st.Live != "billing" || st.Rebuilding == nil || st.Rebuilding.Name != "billing@v1" || st.Rebuilding.Behind != 6 {
		t.Errorf("rebuild status = %+v, %v", st, err)
	}
	if st, err := c.Status(ctx, "billing@v1"); err != nil || st.Group != "billing@v1" || st.Projection != "billing@v1" {
		t.Errorf("status of the version being built = %+v, %v", st, err)
	}
	ab, vs, err := c.AbortRebuild(ctx, "billing", "tester")
	if err != nil || ab.Version != 1 || vs.Building != nil || vs.Live != 0 {
		t.Fatalf("abort = %+v %+v, %v", ab, vs, err)
	}
	if _, _, err := c.AbortRebuild(ctx, "billing", "tester"); !errors.Is(err, ops.ErrRefused) || !strings.Contains(err.Error(), "no rebuild of billing to abort") {
		t.Errorf("a second abort: %v", err)
	}
}
