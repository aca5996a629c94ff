package controltest

import (
	"errors"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

var controlCases = []testCase{
	{"ZeroAtFirst", testControlZero},
	{"PauseAndResume", testPauseResume},
	{"ReplayIsStoredAndCleared", testSetReplay},
	{"BumpEpochAtDropsTheOldEpoch", testBumpEpochAt},
	{"BeginReplayRaisesOnceAndPauses", testBeginReplayOnce},
	{"BeginReplayKeepsAnEarlierPause", testBeginReplayKeepsPause},
	{"BeginReplayFromAFutureEpochFails", testBeginReplayFuture},
	{"ResetIsRequestedThenCompleted", testResetRequest},
	{"Ping", func(t *testing.T, s Store) { must(t, s.Ping(ctxFor(t))) }},
}

func testControlZero(t *testing.T, s Store) {
	c := control(t, s, proj)
	if c.Paused || c.ResetPending() || c.ResetEpoch != 0 || c.ResetDone != 0 || c.Replay != nil || c.PausedBy != "" {
		t.Errorf("control of a new projection = %+v, want the zero value", c)
	}
	if e := epoch(t, s, proj); e != 0 {
		t.Errorf("epoch of a new projection = %d, want 0", e)
	}
}

func testPauseResume(t *testing.T, s Store) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Second)
	must(t, s.SetPaused(ctx, proj, true, "alice", "maintenance"))
	c := control(t, s, proj)
	if !c.Paused || c.PausedBy != "alice" || c.PauseReason != "maintenance" || c.PausedAt.Before(before) || c.PausedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("control after SetPaused(true) = %+v; want paused by alice for maintenance, now", c)
	}
	if c := control(t, s, other); c.Paused {
		t.Errorf("pausing %s paused %s", proj, other)
	}
	must(t, s.SetPaused(ctx, proj, false, "bob", ""))
	if c := control(t, s, proj); c.Paused {
		t.Errorf("control after SetPaused(false) = %+v; want resumed", c)
	}
	must(t, s.SetPaused(ctx, proj, true, "carol", "again"))
	if c := control(t, s, proj); !c.Paused || c.PausedBy != "carol" || c.PauseReason != "again" {
		t.Errorf("control after a second pause = %+v; want paused by carol", c)
	}
}

func testSetReplay(t *testing.T, s Store) {
	ctx := ctxFor(t)
	r := &controlplane.Replay{ID: "r-1", By: "alice", Reason: "bug 17", To: "start", Phase: controlplane.ReplayPausing,
		WasPaused: true, Epoch: 3, Start: map[int32]int64{0: 5, 2: 0}, StartedAt: stamp()}
	must(t, s.SetReplay(ctx, proj, r))
	if r.UpdatedAt.IsZero() {
		t.Error("SetReplay did not set UpdatedAt")
	}
	c := control(t, s, proj)
	if c.Replay == nil || !sameJSON(t, c.Replay, r) {
		t.Fatalf("control replay = %s; want %s", asJSON(c.Replay), asJSON(r))
	}
	r.Phase, r.Error = controlplane.ReplayFailed, "group not empty"
	must(t, s.SetReplay(ctx, proj, r))
	if c := control(t, s, proj); c.Replay == nil || c.Replay.Phase != controlplane.ReplayFailed || c.Replay.Error != "group not empty" {
		t.Errorf("control replay after an update = %s", asJSON(c.Replay))
	}
	must(t, s.SetReplay(ctx, proj, nil))
	if c := control(t, s, proj); c.Replay != nil {
		t.Errorf("control replay after SetReplay(nil) = %s, want none", asJSON(c.Replay))
	}
}

func testBumpEpochAt(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, fctx := acquire(t, s, proj, 0)
	must(t, s.AdvancePartition(fctx, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 4, EventID: "ev-a4"}}, 20))
	_, f1 := acquire(t, s, proj, 1)
	must(t, s.AdvancePartition(f1, proj, 1, nil, 30))
	p := parkAt("process/t/b", 2)
	must(t, s.Park(fctx, proj, p))
	if ok, err := s.RequestResolution(ctx, proj, controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "admin", Parked: p}); !ok || err != nil {
		t.Fatalf("RequestResolution = %v, %v", ok, err)
	}

	e, err := s.BumpEpochAt(ctx, proj, map[int32]int64{0: 7})
	if err != nil || e != 1 {
		t.Fatalf("BumpEpochAt = %d, %v; want 1", e, err)
	}
	if got := epoch(t, s, proj); got != 1 {
		t.Errorf("Epoch = %d, want 1", got)
	}
	cp, err := s.Load(ctx, proj)
	if err != nil || cp.Len() != 0 {
		t.Errorf("Load after the bump = %v, %v; want no cursors", cp, err)
	}
	if heads, _ := s.Heads(ctx, proj, []string{"process/t/a"}); len(heads) != 0 {
		t.Errorf("heads after the bump = %+v", heads)
	}
	if pr := progress(t, s, proj, 0); !pr.Recorded || pr.Next != 7 {
		t.Errorf("progress of partition 0 = %+v; want the baseline 7", pr)
	}
	if pr := progress(t, s, proj, 1); pr.Recorded {
		t.Errorf("progress of partition 1 = %+v; want the old epoch's dropped", pr)
	}
	if list := parked(t, s, proj); len(list) != 0 {
		t.Errorf("parked after the bump = %s", asJSON(list))
	}
	audit := resolutions(t, s, proj, 10)
	if len(audit) != 1 || audit[0].Action != controlplane.ResolveReplay || audit[0].StreamID != p.StreamID || audit[0].Parked.Sequence != 2 ||
		audit[0].Parked.Resolving != nil || audit[0].Done.IsZero() {
		t.Errorf("resolutions = %s; want the cleared park resolved by the replay", asJSON(audit))
	}
	if c := control(t, s, proj); c.Paused || c.ResetPending() {
		t.Errorf("control after BumpEpochAt = %+v; want neither paused nor a reset requested", c)
	}
	if e, err := s.BumpEpochAt(ctx, proj, nil); err != nil || e != 2 {
		t.Errorf("a second BumpEpochAt = %d, %v; want 2", e, err)
	}
	if got := epoch(t, s, other); got != 0 {
		t.Errorf("epoch of %s = %d, want 0", other, got)
	}
}

func testBeginReplayOnce(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.Advance(ctx, proj, map[string]uint64{"process/t/a": 1}))
	p := parkAt("process/t/b", 2)
	must(t, s.Park(ctx, proj, p))
	begun, err := s.BeginReplay(ctx, proj, 0, "tester", "replay 1", map[int32]int64{0: 7, 1: 0})
	if err != nil || !begun.Raised || begun.Epoch != 1 || len(begun.Cleared) != 1 || !sameJSON(t, begun.Cleared[0], p) {
		t.Fatalf("BeginReplay = %s, %v; want epoch 1 raised, the park cleared", asJSON(begun), err)
	}
	c := control(t, s, proj)
	if !c.Paused || c.PausedBy != "tester" || c.PauseReason != "replay 1" || c.ResetEpoch != 1 || c.ResetDone != 0 || !c.ResetPending() {
		t.Errorf("control = %+v; want paused by tester and the reset of epoch 1 requested", c)
	}
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("cursors survived: %v", got)
	}
	if list := parked(t, s, proj); len(list) != 0 {
		t.Errorf("parks survived: %s", asJSON(list))
	}
	if audit := resolutions(t, s, proj, 10); len(audit) != 1 || audit[0].Action != controlplane.ResolveReplay {
		t.Errorf("resolutions = %s", asJSON(audit))
	}
	if pr := progress(t, s, proj, 0); !pr.Recorded || pr.Next != 7 {
		t.Errorf("progress of partition 0 = %+v; want the baseline 7", pr)
	}
	if pr := progress(t, s, proj, 1); !pr.Recorded || pr.Next != 0 {
		t.Errorf("progress of partition 1 = %+v; want the baseline 0", pr)
	}
	if c.Replay != nil {
		t.Errorf("BeginReplay recorded a replay: %s", asJSON(c.Replay))
	}

	// Resumed: nothing is raised twice, the pause is made again.
	must(t, s.SetPaused(ctx, proj, false, "someone", ""))
	again, err := s.BeginReplay(ctx, proj, 0, "tester", "replay 1", map[int32]int64{0: 9})
	if err != nil || again.Raised || again.Epoch != 1 || len(again.Cleared) != 0 {
		t.Errorf("BeginReplay again = %s, %v; want epoch 1, not raised", asJSON(again), err)
	}
	if e := epoch(t, s, proj); e != 1 {
		t.Errorf("epoch %d after a resumed BeginReplay, want 1", e)
	}
	if c := control(t, s, proj); !c.Paused {
		t.Error("a resumed BeginReplay did not pause")
	}
	if pr := progress(t, s, proj, 0); pr.Next != 7 {
		t.Errorf("progress moved to %d by a resumed BeginReplay", pr.Next)
	}
}

func testBeginReplayKeepsPause(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.SetPaused(ctx, proj, true, "alice", "maintenance"))
	if _, err := s.BeginReplay(ctx, proj, 0, "tester", "replay", nil); err != nil {
		t.Fatal(err)
	}
	if c := control(t, s, proj); !c.Paused || c.PausedBy != "alice" || c.PauseReason != "maintenance" {
		t.Errorf("control = %+v; want alice's pause kept as it was", c)
	}
}

func testBeginReplayFuture(t *testing.T, s Store) {
	ctx := ctxFor(t)
	if begun, err := s.BeginReplay(ctx, proj, 5, "tester", "replay", nil); err == nil {
		t.Errorf("BeginReplay from epoch 5 at epoch 0 = %+v, want an error", begun)
	}
	if e := epoch(t, s, proj); e != 0 {
		t.Errorf("epoch = %d after a refused BeginReplay", e)
	}
}

func testResetRequest(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.RequestReset(ctx, proj, 2))
	if c := control(t, s, proj); !c.ResetPending() || c.ResetEpoch != 2 || c.ResetDone != 0 {
		t.Errorf("control after RequestReset(2) = %+v; want the reset of 2 pending", c)
	}
	must(t, s.RequestReset(ctx, proj, 1))
	if c := control(t, s, proj); c.ResetEpoch != 2 {
		t.Errorf("RequestReset(1) lowered the requested epoch to %d", c.ResetEpoch)
	}
	must(t, s.CompleteReset(ctx, proj, 1))
	if c := control(t, s, proj); !c.ResetPending() || c.ResetDone != 1 {
		t.Errorf("control after CompleteReset(1) = %+v; want 2 still pending", c)
	}
	must(t, s.CompleteReset(ctx, proj, 2))
	if c := control(t, s, proj); c.ResetPending() || c.ResetDone != 2 {
		t.Errorf("control after CompleteReset(2) = %+v; want no reset pending", c)
	}
	must(t, s.CompleteReset(ctx, proj, 1))
	if c := control(t, s, proj); c.ResetDone != 2 {
		t.Errorf("CompleteReset(1) lowered the reset done to %d", c.ResetDone)
	}
}

var claimCases = []testCase{
	{"OneHolderUntilRelease", testClaimOneHolder},
	{"ClaimExpiresAfterItsTTL", testClaimExpires},
	{"ClaimsArePerEpoch", testClaimPerEpoch},
	{"NoClaimOnceTheResetIsDone", testClaimDone},
	{"ClaimedStepsNeedTheClaim", testClaimedSteps},
}

func claimReset(t *testing.T, s Store, e uint64, replica string, ttl time.Duration) bool {
	t.Helper()
	won, err := s.ClaimReset(ctxFor(t), proj, e, replica, ttl)
	if err != nil {
		t.Fatalf("ClaimReset(%d, %s): %v", e, replica, err)
	}
	return won
}

func testClaimOneHolder(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.RequestReset(ctx, proj, 1))
	if !claimReset(t, s, 1, "r1", time.Minute) {
		t.Fatal("the first ClaimReset lost")
	}
	if claimReset(t, s, 1, "r2", time.Minute) {
		t.Fatal("a second replica claimed a held reset")
	}
	if ok, err := s.RenewResetClaim(ctx, proj, 1, "r1", time.Minute); !ok || err != nil {
		t.Errorf("RenewResetClaim by the holder = %v, %v; want true", ok, err)
	}
	if ok, err := s.RenewResetClaim(ctx, proj, 1, "r2", time.Minute); ok || err != nil {
		t.Errorf("RenewResetClaim by another replica = %v, %v; want false", ok, err)
	}
	must(t, s.ReleaseResetClaim(ctx, proj, 1, "r2")) // not the holder: nothing happens
	if claimReset(t, s, 1, "r2", time.Minute) {
		t.Fatal("a release by another replica freed the claim")
	}
	must(t, s.ReleaseResetClaim(ctx, proj, 1, "r1"))
	if !claimReset(t, s, 1, "r2", time.Minute) {
		t.Fatal("no claim after the holder released it")
	}
	if ok, _ := s.RenewResetClaim(ctx, proj, 1, "r1", time.Minute); ok {
		t.Error("the former holder renewed a claim it released")
	}
}

func testClaimExpires(t *testing.T, s Store) {
	ctx := ctxFor(t)
	const ttl = 300 * time.Millisecond
	if !claimReset(t, s, 1, "r1", ttl) {
		t.Fatal("ClaimReset lost")
	}
	if claimReset(t, s, 1, "r2", time.Minute) {
		t.Fatal("claimed before the ttl ran out")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !claimReset(t, s, 1, "r2", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatalf("the claim of ttl %s did not expire in 10s", ttl)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if ok, err := s.RenewResetClaim(ctx, proj, 1, "r1", time.Minute); ok || err != nil {
		t.Errorf("RenewResetClaim of an expired claim = %v, %v; want false", ok, err)
	}
}

func testClaimPerEpoch(t *testing.T, s Store) {
	if !claimReset(t, s, 1, "r1", time.Minute) || !claimReset(t, s, 2, "r2", time.Minute) {
		t.Error("a claim on epoch 1 kept another replica from claiming epoch 2")
	}
	won, err := s.ClaimReset(ctxFor(t), other, 1, "r3", time.Minute)
	if err != nil || !won {
		t.Errorf("a claim on %s kept a replica from claiming %s: %v, %v", proj, other, won, err)
	}
}

func testClaimDone(t *testing.T, s Store) {
	ctx := ctxFor(t)
	must(t, s.RequestReset(ctx, proj, 1))
	must(t, s.CompleteReset(ctx, proj, 1))
	if claimReset(t, s, 1, "r1", time.Minute) {
		t.Error("ClaimReset of a reset recorded as done won")
	}
	if !claimReset(t, s, 2, "r1", time.Minute) {
		t.Error("ClaimReset of the next epoch lost")
	}
}

func testClaimedSteps(t *testing.T, s Store) {
	ctx := ctxFor(t)
	begun, err := s.BeginReplay(ctx, proj, 0, "tester", "replay", nil)
	if err != nil || begun.Epoch != 1 {
		t.Fatalf("BeginReplay = %+v, %v", begun, err)
	}
	// The read model's cursors, written (unfenced) since.
	must(t, s.Advance(ctx, proj, map[string]uint64{"process/t/a": 4}))
	if !claimReset(t, s, 1, "r1", time.Minute) {
		t.Fatal("ClaimReset lost")
	}
	lost := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, controlplane.ErrResetClaimLost) {
			t.Errorf("%s without the claim = %v, want an error matching controlplane.ErrResetClaimLost", what, err)
		}
	}
	zombie := controlplane.WithResetClaim(ctx, controlplane.ResetClaim{Projection: proj, Epoch: 1, Holder: "r2"})
	lost("Delete", s.Delete(zombie, proj))
	lost("CompleteReset", s.CompleteReset(zombie, proj, 1))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 4 {
		t.Errorf("a refused Delete dropped the cursors: %v", got)
	}
	if c := control(t, s, proj); c.ResetDone != 0 {
		t.Errorf("a refused CompleteReset marked the reset done: %+v", c)
	}

	holder := controlplane.WithResetClaim(ctx, controlplane.ResetClaim{Projection: proj, Epoch: 1, Holder: "r1"})
	must(t, s.Delete(holder, proj))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("the holder's Delete left the cursors: %v", got)
	}
	must(t, s.CompleteReset(holder, proj, 1))
	if c := control(t, s, proj); c.ResetPending() || c.ResetDone != 1 {
		t.Errorf("control after the holder's CompleteReset = %+v", c)
	}
	// Done: a late zombie marks nothing and is not refused, and nobody may
	// delete with a claim any more.
	if err := s.CompleteReset(zombie, proj, 1); err != nil {
		t.Errorf("CompleteReset of a reset done = %v, want nil", err)
	}
	lost("Delete after the reset was done", s.Delete(holder, proj))
}
