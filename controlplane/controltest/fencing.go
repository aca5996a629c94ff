package controltest

import (
	"errors"
	"maps"
	"testing"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

var fencingCases = []testCase{
	{"TokensIncreasePerPartition", testTokensIncrease},
	{"StaleTokenWritesNothing", testStaleTokenWritesNothing},
	{"StaleTokenCannotPark", testStaleTokenCannotPark},
	{"OldEpochIsFenced", testOldEpochIsFenced},
	{"NewEpochWaitsForTheReset", testNewEpochWaitsForReset},
	{"FencesArePerPartition", testFencesPerPartition},
	{"FencesArePerProjection", testFencesPerProjection},
	{"FenceOfAnotherProjectionIsRefused", testFenceOfAnotherProjection},
	{"UnfencedWritesAreNotChecked", testUnfencedWrites},
}

func testTokensIncrease(t *testing.T, s Store) {
	f1, _ := acquire(t, s, proj, 0)
	if f1.Projection != proj || f1.Partition != 0 || f1.Epoch != 0 || f1.Token == 0 {
		t.Fatalf("first fence = %+v; want projection %s, partition 0, epoch 0, a token above 0", f1, proj)
	}
	prev := f1
	for range 5 {
		f, _ := acquire(t, s, proj, 0)
		if f.Token <= prev.Token || f.Epoch != 0 {
			t.Fatalf("fence %+v after %+v; want a higher token in epoch 0", f, prev)
		}
		prev = f
	}
	// Delete keeps the tokens increasing.
	must(t, s.Delete(ctxFor(t), proj))
	if f, _ := acquire(t, s, proj, 0); f.Token <= prev.Token {
		t.Errorf("fence after Delete = %+v; want a token above %d", f, prev.Token)
	}
	_, ctx := acquire(t, s, proj, 0)
	if err := s.CheckState(ctx, proj); err != nil {
		t.Errorf("CheckState with the current fence = %v, want nil", err)
	}
}

func testStaleTokenWritesNothing(t *testing.T, s Store) {
	ctx := ctxFor(t)
	f1, old := acquire(t, s, proj, 0)
	must(t, s.Advance(old, proj, map[string]uint64{"process/t/a": 1}))
	must(t, s.AdvancePartition(old, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 2, EventID: "ev-2"}}, 5))

	f2, cur := acquire(t, s, proj, 0)
	if f2.Token <= f1.Token {
		t.Fatalf("second fence %+v is not above %+v", f2, f1)
	}
	fenced(t, "Advance", s.Advance(old, proj, map[string]uint64{"process/t/a": 9, "process/t/b": 9}))
	fenced(t, "AdvancePartition", s.AdvancePartition(old, proj, 0,
		[]controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 9, EventID: "ev-9"}}, 99))
	cp := framework.NewGlobalProjectionCheckpoint()
	cp.Advance("process/t/z", 1)
	fenced(t, "Save", s.Save(old, proj, cp))
	fenced(t, "Delete", s.Delete(old, proj))
	fenced(t, "CheckState", s.CheckState(old, proj))

	if got := cursors(t, s, proj, "process/t/a", "process/t/b", "process/t/z"); !maps.Equal(got, map[string]uint64{"process/t/a": 2, "process/t/b": 0, "process/t/z": 0}) {
		t.Errorf("cursors after stale writes = %v; want a at 2, nothing else", got)
	}
	heads, err := s.Heads(ctx, proj, []string{"process/t/a"})
	if err != nil || heads["process/t/a"].EventID != "ev-2" {
		t.Errorf("heads after stale writes = %+v, %v; want ev-2 at 2", heads, err)
	}
	if pr := progress(t, s, proj, 0); !pr.Recorded || pr.Next != 5 {
		t.Errorf("progress after stale writes = %+v; want 5", pr)
	}
	if err := s.CheckState(cur, proj); err != nil {
		t.Errorf("CheckState with the current fence = %v", err)
	}
	must(t, s.AdvancePartition(cur, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 3, EventID: "ev-3"}}, 7))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 3 {
		t.Errorf("cursor after the current holder's write = %d, want 3", got["process/t/a"])
	}
}

func testStaleTokenCannotPark(t *testing.T, s Store) {
	_, old := acquire(t, s, proj, 0)
	p := parkAt("process/t/a", 4)
	must(t, s.Park(old, proj, p))
	_, cur := acquire(t, s, proj, 0)

	fenced(t, "Park", s.Park(old, proj, parkAt("process/t/b", 1)))
	updated := p
	updated.DeadLetter = controlplane.DeadLetterCopied
	ok, err := s.UpdateParked(old, proj, updated)
	fenced(t, "UpdateParked", err)
	if ok {
		t.Error("UpdateParked with a stale fence reported true")
	}
	res := controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveSkip, By: "admin", Reason: "test", Parked: p}
	ok, err = s.RequestResolution(old, proj, res)
	fenced(t, "RequestResolution", err)
	if ok {
		t.Error("RequestResolution with a stale fence reported true")
	}
	ok, err = s.Unpark(old, proj, res)
	fenced(t, "Unpark", err)
	if ok {
		t.Error("Unpark with a stale fence reported true")
	}
	list := parked(t, s, proj)
	if len(list) != 1 || !sameJSON(t, list[0], p) {
		t.Errorf("parked after stale writes = %s; want only %s", asJSON(list), asJSON(p))
	}
	if got := resolutions(t, s, proj, 10); len(got) != 0 {
		t.Errorf("resolutions after stale writes = %s, want none", asJSON(got))
	}
	if ok, err := s.Unpark(cur, proj, res); !ok || err != nil {
		t.Errorf("Unpark with the current fence = %v, %v", ok, err)
	}
}

func testOldEpochIsFenced(t *testing.T, s Store) {
	ctx := ctxFor(t)
	f0, old := acquire(t, s, proj, 0)
	must(t, s.Advance(old, proj, map[string]uint64{"process/t/a": 5}))
	e, err := s.BumpEpochAt(ctx, proj, map[int32]int64{0: 3})
	if err != nil || e != 1 {
		t.Fatalf("BumpEpochAt = %d, %v; want epoch 1", e, err)
	}
	fenced(t, "Advance of the old epoch", s.Advance(old, proj, map[string]uint64{"process/t/a": 6}))
	fenced(t, "Park of the old epoch", s.Park(old, proj, parkAt("process/t/a", 6)))
	fenced(t, "CheckState of the old epoch", s.CheckState(old, proj))
	f1, cur := acquire(t, s, proj, 0)
	if f1.Epoch != 1 || f1.Token <= f0.Token {
		t.Fatalf("fence after the bump = %+v; want epoch 1 and a token above %d", f1, f0.Token)
	}
	if err := s.CheckState(cur, proj); err != nil {
		t.Errorf("CheckState with the new epoch's fence = %v", err)
	}
	must(t, s.Advance(cur, proj, map[string]uint64{"process/t/a": 1}))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 1 {
		t.Errorf("cursor in the new epoch = %d, want 1 (the old epoch's 5 dropped)", got["process/t/a"])
	}
}

func testNewEpochWaitsForReset(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, old := acquire(t, s, proj, 0)
	begun, err := s.BeginReplay(ctx, proj, 0, "tester", "replay", map[int32]int64{0: 0})
	if err != nil || !begun.Raised || begun.Epoch != 1 {
		t.Fatalf("BeginReplay = %+v, %v", begun, err)
	}
	fenced(t, "Advance of the epoch before the replay", s.Advance(old, proj, map[string]uint64{"process/t/a": 1}))
	_, cur := acquire(t, s, proj, 0)
	if err := s.Advance(cur, proj, map[string]uint64{"process/t/a": 1}); !errors.Is(err, controlplane.ErrResetPending) {
		t.Errorf("a write of the new epoch before its reset = %v, want an error matching controlplane.ErrResetPending", err)
	}
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("a write refused for the pending reset stored cursor %d", got["process/t/a"])
	}
	must(t, s.CompleteReset(ctx, proj, 1))
	if err := s.Advance(cur, proj, map[string]uint64{"process/t/a": 1}); err != nil {
		t.Errorf("a write of the new epoch after its reset = %v", err)
	}
}

func testFencesPerPartition(t *testing.T, s Store) {
	f0, p0 := acquire(t, s, proj, 0)
	f1, p1 := acquire(t, s, proj, 1)
	if f1.Partition != 1 || f0.Partition != 0 {
		t.Fatalf("fences %+v, %+v", f0, f1)
	}
	acquire(t, s, proj, 1) // partition 1 changes hands
	must(t, s.Advance(p0, proj, map[string]uint64{"process/t/a": 1}))
	must(t, s.AdvancePartition(p0, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 2}}, 4))
	if err := s.CheckState(p0, proj); err != nil {
		t.Errorf("partition 0's fence after a new fence of partition 1: CheckState = %v, want nil", err)
	}
	fenced(t, "Advance with partition 1's old fence", s.Advance(p1, proj, map[string]uint64{"process/t/b": 1}))
	if got := cursors(t, s, proj, "process/t/a", "process/t/b"); got["process/t/a"] != 2 || got["process/t/b"] != 0 {
		t.Errorf("cursors = %v; want a at 2, b at 0", got)
	}
}

func testFencesPerProjection(t *testing.T, s Store) {
	_, p := acquire(t, s, proj, 0)
	o, _ := acquire(t, s, other, 0)
	acquire(t, s, other, 0)
	if o.Projection != other {
		t.Fatalf("fence of %s = %+v", other, o)
	}
	if err := s.CheckState(p, proj); err != nil {
		t.Errorf("%s's fence after new fences of %s: CheckState = %v, want nil", proj, other, err)
	}
	must(t, s.Advance(p, proj, map[string]uint64{"process/t/a": 1}))
}

func testFenceOfAnotherProjection(t *testing.T, s Store) {
	_, o := acquire(t, s, other, 0)
	if err := s.Advance(o, proj, map[string]uint64{"process/t/a": 1}); err == nil {
		t.Errorf("Advance of %s with a fence of %s = nil, want a refusal", proj, other)
	}
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("a write with another projection's fence stored cursor %d", got["process/t/a"])
	}
}

func testUnfencedWrites(t *testing.T, s Store) {
	ctx := ctxFor(t)
	acquire(t, s, proj, 0)
	acquire(t, s, proj, 0)
	must(t, s.Advance(ctx, proj, map[string]uint64{"process/t/a": 3}))
	must(t, s.Park(ctx, proj, parkAt("process/t/b", 1)))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 3 {
		t.Errorf("cursor after an unfenced Advance = %d, want 3", got["process/t/a"])
	}
	if len(parked(t, s, proj)) != 1 {
		t.Error("an unfenced Park stored nothing")
	}
	if err := s.AdvancePartition(ctx, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 4}}, 1); err == nil {
		t.Error("AdvancePartition without a fence = nil, want an error (progress is per partition: it needs the partition's fence)")
	}
	f, _ := acquire(t, s, proj, 1)
	if err := s.AdvancePartition(controlplane.WithFence(ctx, f), proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 4}}, 1); err == nil {
		t.Error("AdvancePartition of partition 0 with partition 1's fence = nil, want an error")
	}
	if pr := progress(t, s, proj, 0); pr.Recorded {
		t.Errorf("refused AdvancePartition calls recorded progress %+v", pr)
	}
}
