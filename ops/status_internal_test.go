package ops

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

// TestStatusAssemble: lost state, state, problems, warnings and the last
// error are derived from what was gathered as projectorctl status always
// showed them.
func TestStatusAssemble(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := Status{
		Epoch:   2,
		Members: []Member{{ID: "m1"}},
		Partitions: []PartitionLag{
			{Partition: 0, Committed: 10, End: 15, Lag: 5},  // progress 10: fine
			{Partition: 1, Committed: 20, End: 20, Lag: 0},  // nothing recorded: lost
			{Partition: 2, Committed: 30, End: 40, Lag: 10}, // progress 25 < 30: lost
			{Partition: 3, Committed: -1, End: 4, Lag: 4},   // nothing committed: fine
			{Partition: 4, Committed: 9, End: 9, Lag: 0},    // untracked: adopted
			{Partition: 5, Committed: -1, End: 3, Lag: -1},  // not measured
		},
		Replicas: []controlplane.ReplicaInfo{
			{ID: "r1", LastError: "boom", Warnings: []string{"no AOF"}, Unverified: 2},
			{ID: "r2", Warnings: []string{"no AOF", "other"},
				Problems: []controlplane.PartitionStatus{{Partition: 1, State: "state-lost", Error: "lost", Since: since}}},
		},
	}
	st.assemble(map[int32]controlplane.PartitionProgress{
		0: {Next: 10, Recorded: true},
		2: {Next: 25, Recorded: true},
		4: {Untracked: true},
	})
	if st.TotalLag != 19 {
		t.Errorf("TotalLag = %d, want 19 (an unmeasured partition does not count)", st.TotalLag)
	}
	var lost []int32
	for _, p := range st.Partitions {
		if p.StateLost {
			lost = append(lost, p.Partition)
		}
	}
	if !slices.Equal(lost, []int32{1, 2}) {
		t.Errorf("state lost on %v, want [1 2]", lost)
	}
	if p := st.Partitions; p[0].Progress != 10 || p[1].Progress != -1 || p[2].Progress != 25 || p[4].Progress != -1 {
		t.Errorf("progress = %+v", p)
	}
	want := []string{
		"partition 1: the group committed offset 20 but Redis holds the read model of nothing (epoch 2): state lost; replay the projection",
		"partition 2: the group committed offset 30 but Redis holds the read model of offsets below 25 (epoch 2): state lost; replay the projection",
		"replica r1 skipped 2 duplicates whose event ID it could not verify (see docs/runner.md)",
		"replica r2 partition 1 state-lost since 2026-01-02T03:04:05Z: lost",
	}
	if !slices.Equal(st.Problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(st.Problems, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(st.Warnings, []string{"no AOF", "other"}) {
		t.Errorf("warnings = %q", st.Warnings)
	}
	if st.LastError != "r1: boom" || st.State != StateRunning {
		t.Errorf("last error %q, state %q", st.LastError, st.State)
	}

	for _, c := range []struct {
		ctl     controlplane.Control
		members int
		want    string
	}{
		{controlplane.Control{}, 0, StateStopped},
		{controlplane.Control{Paused: true}, 1, StatePaused},
		{controlplane.Control{Paused: true, Replay: &controlplane.Replay{Phase: controlplane.ReplayResetting}}, 0, StateReplaying},
		{controlplane.Control{Replay: &controlplane.Replay{Phase: controlplane.ReplayDone}}, 1, StateRunning},
		{controlplane.Control{Replay: &controlplane.Replay{ID: "x", Phase: controlplane.ReplayFailed, Error: "no"}}, 1, StateRunning},
	} {
		st := Status{Control: c.ctl, Members: make([]Member, c.members)}
		st.assemble(nil)
		if st.State != c.want {
			t.Errorf("control %+v with %d members: state %q, want %q", c.ctl, c.members, st.State, c.want)
		}
		if c.ctl.Replay != nil && c.ctl.Replay.Error != "" && st.LastError != "replay x: no" {
			t.Errorf("last error %q", st.LastError)
		}
	}
}

func TestReplayPlanCheck(t *testing.T) {
	p := ReplayPlan{Projection: Projection{Name: "billing"}}
	if err := p.Check(); err != nil {
		t.Errorf("no replica reporting: %v", err)
	}
	p.Status.Replicas = []controlplane.ReplicaInfo{{ID: "a"}}
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "can reset its read model") {
		t.Errorf("no resettable replica: %v", err)
	}
	p.KeepModel = true
	if err := p.Check(); err != nil {
		t.Errorf("a replay that keeps the model: %v", err)
	}
	p.KeepModel = false
	p.Status.Replicas = append(p.Status.Replicas, controlplane.ReplicaInfo{ID: "b", Resettable: true})
	if err := p.Check(); err != nil {
		t.Errorf("a resettable replica: %v", err)
	}
}

func TestVersionState(t *testing.T) {
	vs := controlplane.Versions{Live: 2, Last: 4, Building: &controlplane.Rebuild{Version: 4},
		Retiring: []controlplane.Retiring{{Version: 1}}}
	for v, want := range map[uint64]string{2: VersionLive, 4: VersionBuilding, 1: VersionRetired} {
		if got, err := versionState(vs, "billing", v); err != nil || got != want {
			t.Errorf("version %d: %q, %v; want %q", v, got, err, want)
		}
	}
	_, err := versionState(vs, "billing", 3)
	if err == nil || !strings.Contains(err.Error(), "billing@v3 is not a version of billing that exists (live v2, building v4, retired v1)") {
		t.Errorf("version 3: %v", err)
	}
	if !isKind(err, ErrNotFound) {
		t.Errorf("version 3: %v is not ErrNotFound", err)
	}
	if err := (Projection{Name: "billing@v1", State: VersionRetired}).Writable(); !isKind(err, ErrRefused) {
		t.Errorf("a retired version is writable: %v", err)
	}
}

func isKind(err, kind error) bool {
	e, ok := err.(*Error)
	return ok && e.Kind == kind
}

func TestProjectionRef(t *testing.T) {
	for _, c := range []struct {
		p    Projection
		want string
	}{
		{Projection{Name: "billing", Base: "billing"}, "billing@v0"},
		{Projection{Name: "billing@v3", Base: "billing", Version: 3}, "billing@v3"},
	} {
		if got := c.p.Ref(); got != c.want {
			t.Errorf("Ref of %+v = %q, want %q", c.p, got, c.want)
		}
	}
}
