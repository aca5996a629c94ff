package controltest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

var replicaCases = []testCase{
	{"HeartbeatThenListed", testHeartbeat},
	{"RemoveReplica", testRemoveReplica},
	{"StaleReportsAreDropped", testStaleReplicas},
}

func replicas(t *testing.T, s Store, staleAfter time.Duration) []controlplane.ReplicaInfo {
	t.Helper()
	list, err := s.Replicas(ctxFor(t), proj, staleAfter)
	if err != nil {
		t.Fatalf("Replicas: %v", err)
	}
	return list
}

func testHeartbeat(t *testing.T, s Store) {
	ctx := ctxFor(t)
	if list := replicas(t, s, time.Minute); len(list) != 0 {
		t.Fatalf("replicas of a new projection = %s", asJSON(list))
	}
	before := time.Now().Add(-time.Second)
	r1 := controlplane.ReplicaInfo{ID: "r1", Host: "host-a", Group: proj, Partitions: []int32{0, 2}, State: "running", Applied: 10, Skipped: 1,
		Parked: 2, Unverified: 3, LastError: "boom", LastErrorAt: stamp(), Warnings: []string{"no persistence"}, Resettable: true,
		Problems: []controlplane.PartitionStatus{{Partition: 2, State: "retrying", Error: "timeout", Since: stamp()}}}
	r2 := controlplane.ReplicaInfo{ID: "r2", Host: "host-b", Group: proj, Partitions: []int32{1}, State: "paused"}
	must(t, s.Heartbeat(ctx, proj, r1))
	must(t, s.Heartbeat(ctx, proj, r2))
	list := replicas(t, s, time.Minute)
	if !slices.Equal(replicaIDs(list), []string{"r1", "r2"}) {
		t.Fatalf("Replicas = %s; want r1 and r2", asJSON(list))
	}
	for _, got := range list {
		want := r1
		if got.ID == "r2" {
			want = r2
		}
		if got.SeenAt.Before(before) || got.SeenAt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s SeenAt = %v, want now", got.ID, got.SeenAt)
		}
		want.SeenAt = got.SeenAt
		if !sameJSON(t, got, want) {
			t.Errorf("replica %s = %s; want %s", got.ID, asJSON(got), asJSON(want))
		}
	}
	// A new report replaces the replica's last one.
	r1.State, r1.Applied = "stopped", 11
	must(t, s.Heartbeat(ctx, proj, r1))
	for _, got := range replicas(t, s, time.Minute) {
		if got.ID == "r1" && (got.State != "stopped" || got.Applied != 11) {
			t.Errorf("r1 after a second report = %s", asJSON(got))
		}
	}
	if list, err := s.Replicas(ctx, other, time.Minute); err != nil || len(list) != 0 {
		t.Errorf("replicas of %s = %s, %v; want none", other, asJSON(list), err)
	}
}

func testRemoveReplica(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.Heartbeat(ctx, proj, controlplane.ReplicaInfo{ID: "r1", State: "running"}))
	must(t, s.Heartbeat(ctx, proj, controlplane.ReplicaInfo{ID: "r2", State: "running"}))
	must(t, s.RemoveReplica(ctx, proj, "r1"))
	if ids := replicaIDs(replicas(t, s, time.Minute)); !slices.Equal(ids, []string{"r2"}) {
		t.Errorf("Replicas after RemoveReplica(r1) = %v, want [r2]", ids)
	}
	must(t, s.RemoveReplica(ctx, proj, "never-seen"))
}

func testStaleReplicas(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.Heartbeat(ctx, proj, controlplane.ReplicaInfo{ID: "old", State: "running"}))
	time.Sleep(600 * time.Millisecond)
	must(t, s.Heartbeat(ctx, proj, controlplane.ReplicaInfo{ID: "new", State: "running"}))
	if ids := replicaIDs(replicas(t, s, 300*time.Millisecond)); !slices.Equal(ids, []string{"new"}) {
		t.Errorf("Replicas(300ms) = %v; want only the fresh report", ids)
	}
	// A dropped report is gone, not hidden.
	if ids := replicaIDs(replicas(t, s, time.Hour)); !slices.Equal(ids, []string{"new"}) {
		t.Errorf("Replicas(1h) after the stale report was dropped = %v; want [new]", ids)
	}
}

var versionCases = []testCase{
	{"ZeroAtFirst", testVersionsZero},
	{"RebuildThenSwitchLive", testRebuildSwitch},
	{"SwitchLiveRefusesAVersionBehind", testSwitchBehind},
	{"FreezeLiveForTheSwitch", testFreezeLive},
	{"AbortRebuild", testAbortRebuild},
	{"ClosedVersionsRefuseFencesAndWrites", testClosedVersions},
	{"RetireNow", testRetireNow},
	{"ReplayOfTheLiveVersionBlocksARebuild", testReplayBlocksRebuild},
	{"VersionedNameIsRefused", testVersionedNameRefused},
}

func versions(t *testing.T, s Store) controlplane.Versions {
	t.Helper()
	v, err := s.Versions(ctxFor(t), proj)
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	return v
}

func startRebuild(t *testing.T, s Store, r controlplane.Rebuild) controlplane.Rebuild {
	t.Helper()
	got, err := s.StartRebuild(ctxFor(t), proj, r)
	if err != nil {
		t.Fatalf("StartRebuild: %v", err)
	}
	return got
}

func testVersionsZero(t *testing.T, s Store) {
	if v := versions(t, s); v.Live != 0 || v.Last != 0 || v.Building != nil || len(v.Retiring) != 0 || len(v.History) != 0 || !v.SwitchedAt.IsZero() {
		t.Errorf("versions of a new projection = %s, want the zero value", asJSON(v))
	}
}

func testRebuildSwitch(t *testing.T, s Store) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Second)
	r := startRebuild(t, s, controlplane.Rebuild{By: "alice", Reason: "new index", Grace: time.Hour})
	if r.Version != 1 || r.By != "alice" || r.StartedAt.Before(before) {
		t.Fatalf("StartRebuild = %s; want version 1 started now", asJSON(r))
	}
	v := versions(t, s)
	if v.Live != 0 || v.Last != 1 || v.Building == nil || v.Building.Version != 1 || v.Building.Reason != "new index" {
		t.Fatalf("versions while building = %s", asJSON(v))
	}
	if _, err := s.StartRebuild(ctx, proj, controlplane.Rebuild{By: "bob"}); err == nil {
		t.Error("a second StartRebuild while one runs = nil, want an error")
	}
	if _, err := s.SwitchLive(ctx, proj, 2, "bob"); err == nil {
		t.Error("SwitchLive of a version not building = nil, want an error")
	}
	v, err := s.SwitchLive(ctx, proj, 1, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if v.Live != 1 || v.Last != 1 || v.Building != nil || v.SwitchedBy != "bob" || v.SwitchedFrom != 0 || v.SwitchedAt.IsZero() {
		t.Errorf("versions after SwitchLive = %s", asJSON(v))
	}
	if len(v.Retiring) != 1 || v.Retiring[0].Version != 0 || v.Retiring[0].Why == "" || v.Retiring[0].RetireAt.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("retiring = %s; want version 0, retiring after the hour of grace", asJSON(v.Retiring))
	}
	if len(v.History) != 1 || v.History[0].Version != 1 || v.History[0].Outcome != "switched" || v.History[0].EndedAt.IsZero() {
		t.Errorf("history = %s; want version 1 switched", asJSON(v.History))
	}
	if got := versions(t, s); !sameJSON(t, got, v) {
		t.Errorf("Versions = %s; want what SwitchLive returned, %s", asJSON(got), asJSON(v))
	}
	if _, err := s.SwitchLive(ctx, proj, 1, "bob"); err == nil {
		t.Error("a second SwitchLive = nil, want an error")
	}
	if r := startRebuild(t, s, controlplane.Rebuild{By: "carol"}); r.Version != 2 {
		t.Errorf("the next rebuild = version %d, want 2", r.Version)
	}
}

// testSwitchBehind: SwitchLive compares the cursors in its own step: a
// new version that holds less of a stream than the live one is not
// switched to (the model served would go back), and nothing changes.
func testSwitchBehind(t *testing.T, s Store) {
	ctx := ctxFor(t)
	live := framework.NewGlobalProjectionCheckpoint()
	live.Advance("process/t/a", 5)
	live.Advance("process/t/b", 2)
	must(t, s.Save(ctx, proj, live))
	startRebuild(t, s, controlplane.Rebuild{By: "alice", Grace: time.Hour})
	next := framework.NewGlobalProjectionCheckpoint()
	next.Advance("process/t/a", 3)
	next.Advance("process/t/b", 2)
	must(t, s.Save(ctx, framework.VersionedName(proj, 1), next))
	_, err := s.SwitchLive(ctx, proj, 1, "bob")
	var behind *controlplane.SwitchBehindError
	if !errors.Is(err, controlplane.ErrSwitchBehind) || !errors.As(err, &behind) || behind.Behind != 1 ||
		len(behind.Examples) != 1 || behind.Examples[0] != "process/t/a (live at 5, new at 3)" {
		t.Fatalf("SwitchLive of a version behind = %v, want a SwitchBehindError naming process/t/a", err)
	}
	if v := versions(t, s); v.Live != 0 || v.Building == nil || v.Building.Version != 1 {
		t.Fatalf("versions after a refused switch = %s, want unchanged", asJSON(v))
	}
	next.Advance("process/t/a", 5)
	must(t, s.Save(ctx, framework.VersionedName(proj, 1), next))
	if v, err := s.SwitchLive(ctx, proj, 1, "bob"); err != nil || v.Live != 1 {
		t.Fatalf("SwitchLive once caught up = %s, %v", asJSON(v), err)
	}
}

// testFreezeLive: a store that can freeze the live version for a switch
// (kafkarunner.LiveFreezer) records the freeze in the rebuild, ends it on
// request and with the switch, and refuses it for a version not being
// built.
func testFreezeLive(t *testing.T, s Store) {
	fr, ok := s.(interface {
		FreezeLive(ctx context.Context, projection string, version uint64, until time.Time, by string) error
	})
	if !ok {
		t.Skip("the store cannot freeze the live version")
	}
	ctx := ctxFor(t)
	until := time.Now().Add(5 * time.Second).UTC()
	if err := fr.FreezeLive(ctx, proj, 1, until, "alice"); err == nil {
		t.Error("FreezeLive without a rebuild = nil, want an error")
	}
	startRebuild(t, s, controlplane.Rebuild{By: "alice", Grace: time.Hour})
	if err := fr.FreezeLive(ctx, proj, 2, until, "alice"); err == nil {
		t.Error("FreezeLive of a version not being built = nil, want an error")
	}
	must(t, fr.FreezeLive(ctx, proj, 1, until, "alice"))
	if v := versions(t, s); !v.Building.FrozenUntil.Equal(until) || v.Building.FrozenBy != "alice" || !v.Building.Frozen(time.Now()) ||
		v.Building.Frozen(until) {
		t.Fatalf("versions after FreezeLive = %s; want the rebuild frozen until %v by alice", asJSON(v), until)
	}
	if err := fr.FreezeLive(ctx, proj, 1, until.Add(time.Second), "bob"); err == nil {
		t.Error("FreezeLive by bob while alice's freeze lasts = nil, want an error")
	}
	must(t, fr.FreezeLive(ctx, proj, 1, time.Time{}, "bob")) // not bob's: stays
	if v := versions(t, s); !v.Building.FrozenUntil.Equal(until) || v.Building.FrozenBy != "alice" {
		t.Fatalf("versions after bob ended a freeze he did not set = %s; want alice's freeze", asJSON(v))
	}
	began := versions(t, s).Building.FrozenAt
	must(t, fr.FreezeLive(ctx, proj, 1, time.Time{}, "alice"))
	if v := versions(t, s); !v.Building.FrozenUntil.IsZero() || v.Building.FrozenBy != "" || v.Building.Frozen(time.Now()) ||
		began.IsZero() || !v.Building.FrozenAt.Equal(began) {
		t.Fatalf("versions after ending the freeze = %s; want no freeze, FrozenAt kept (%v)", asJSON(v), began)
	}
	must(t, fr.FreezeLive(ctx, proj, 1, until, "alice"))
	v, err := s.SwitchLive(ctx, proj, 1, "alice")
	if err != nil || v.Live != 1 || len(v.History) != 1 || !v.History[0].FrozenUntil.IsZero() {
		t.Fatalf("SwitchLive while frozen = %s, %v; want live 1 and the freeze gone", asJSON(v), err)
	}
}

func testAbortRebuild(t *testing.T, s Store) {
	ctx := ctxFor(t)
	if _, err := s.AbortRebuild(ctx, proj, "alice"); err == nil {
		t.Error("AbortRebuild without a rebuild = nil, want an error")
	}
	startRebuild(t, s, controlplane.Rebuild{By: "alice"})
	aborted, err := s.AbortRebuild(ctx, proj, "bob")
	if err != nil || aborted.Version != 1 || aborted.By != "alice" || aborted.EndedAt.IsZero() || aborted.Outcome == "" {
		t.Fatalf("AbortRebuild = %s, %v; want version 1 ended", asJSON(aborted), err)
	}
	v := versions(t, s)
	if v.Live != 0 || v.Last != 1 || v.Building != nil || len(v.Retiring) != 1 || v.Retiring[0].Version != 1 ||
		len(v.History) != 1 || v.History[0].Version != 1 {
		t.Errorf("versions after the abort = %s; want live 0, version 1 retiring and in the history", asJSON(v))
	}
	if _, err := s.AbortRebuild(ctx, proj, "bob"); err == nil {
		t.Error("a second AbortRebuild = nil, want an error")
	}
	if r := startRebuild(t, s, controlplane.Rebuild{By: "carol"}); r.Version != 2 {
		t.Errorf("the rebuild after an abort = version %d, want 2 (a number is never used twice)", r.Version)
	}
}

func testClosedVersions(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, old := acquire(t, s, proj, 0)
	startRebuild(t, s, controlplane.Rebuild{By: "alice"})
	v1 := framework.VersionedName(proj, 1)
	_, building := acquire(t, s, v1, 0)
	must(t, s.Advance(building, v1, map[string]uint64{"process/t/a": 1}))
	if _, err := s.SwitchLive(ctx, proj, 1, "alice"); err != nil {
		t.Fatal(err)
	}
	closed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, controlplane.ErrVersionClosed) {
			t.Errorf("%s of the replaced version = %v, want an error matching controlplane.ErrVersionClosed", what, err)
		}
	}
	_, err := s.AcquireFence(ctx, proj, 0)
	closed("AcquireFence", err)
	closed("a fenced Advance", s.Advance(old, proj, map[string]uint64{"process/t/a": 1}))
	closed("Heartbeat", s.Heartbeat(ctx, proj, controlplane.ReplicaInfo{ID: "r1"}))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("a write to the closed version stored cursor %d", got["process/t/a"])
	}
	// The live version takes fences and writes.
	must(t, s.Advance(building, v1, map[string]uint64{"process/t/a": 2}))
	acquire(t, s, v1, 1)
	must(t, s.Heartbeat(ctx, v1, controlplane.ReplicaInfo{ID: "r1"}))

	// An aborted rebuild's version is closed too.
	startRebuild(t, s, controlplane.Rebuild{By: "bob"})
	v2 := framework.VersionedName(proj, 2)
	_, f2 := acquire(t, s, v2, 0)
	if _, err := s.AbortRebuild(ctx, proj, "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = s.AcquireFence(ctx, v2, 0)
	closed("AcquireFence of an aborted rebuild", err)
	closed("a fenced Advance of an aborted rebuild", s.Advance(f2, v2, map[string]uint64{"process/t/a": 1}))
}

func testRetireNow(t *testing.T, s Store) {
	ctx := ctxFor(t)
	startRebuild(t, s, controlplane.Rebuild{By: "alice", Grace: 24 * time.Hour, Keep: true})
	if _, err := s.SwitchLive(ctx, proj, 1, "alice"); err != nil {
		t.Fatal(err)
	}
	if v := versions(t, s); len(v.Retiring) != 1 || !v.Retiring[0].Keep {
		t.Fatalf("retiring = %s; want version 0 kept", asJSON(v.Retiring))
	}
	must(t, s.RetireNow(ctx, proj, 0))
	v := versions(t, s)
	if len(v.Retiring) != 1 || v.Retiring[0].Keep || v.Retiring[0].RetireAt.After(time.Now().Add(time.Second)) {
		t.Errorf("retiring after RetireNow = %s; want version 0 due now, not kept", asJSON(v.Retiring))
	}
	if err := s.RetireNow(ctx, proj, 7); err == nil {
		t.Error("RetireNow of a version not retiring = nil, want an error")
	}
}

func testReplayBlocksRebuild(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.SetReplay(ctx, proj, &controlplane.Replay{ID: "r-1", By: "alice", To: "start", Phase: controlplane.ReplayResetting, StartedAt: stamp()}))
	if _, err := s.StartRebuild(ctx, proj, controlplane.Rebuild{By: "bob"}); err == nil {
		t.Error("StartRebuild during a replay of the live version = nil, want an error")
	}
	must(t, s.SetReplay(ctx, proj, &controlplane.Replay{ID: "r-1", By: "alice", To: "start", Phase: controlplane.ReplayDone, StartedAt: stamp()}))
	if r := startRebuild(t, s, controlplane.Rebuild{By: "bob"}); r.Version != 1 {
		t.Errorf("StartRebuild after the replay = version %d, want 1", r.Version)
	}
}

func testVersionedNameRefused(t *testing.T, s Store) {
	if _, err := s.Versions(ctxFor(t), framework.VersionedName(proj, 2)); err == nil {
		t.Error("Versions of a versioned name = nil, want an error (the registry is the bare projection's)")
	}
}
