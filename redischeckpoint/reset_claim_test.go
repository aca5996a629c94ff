package redischeckpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestResetWithAnExpiredClaimDeletesNothing: a replica's claim on a
// replay's reset expires for real (its TTL runs out: the replica froze) and
// another replica takes the reset over. The first one's reset, carried on
// with its claim in the context, deletes nothing, neither while the other
// holds the claim nor after the reset was completed and new writes began,
// and it cannot mark the reset done. A reset without a claim in the context
// (a user's direct call) drops the model as before.
func TestResetWithAnExpiredClaimDeletesNothing(t *testing.T) {
	s, env, ns := newStore(t, redischeckpoint.Config{})
	if !env.Real {
		t.Skip("miniredis expires a key only when its clock is moved, which this test cannot do: it needs a Redis server")
	}
	testExpiredClaim(t, s, env.Client, ns)
}

// TestClusterResetClaim runs the claimed reset and BeginReplay on a real
// three-master Redis Cluster: the claim, the control hash and the read
// model share the projection's slot.
func TestClusterResetClaim(t *testing.T) {
	client := startCluster(t)
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: "cluster"})
	if err != nil {
		t.Fatal(err)
	}
	testExpiredClaim(t, s, client, "cluster")
	begun, err := s.BeginReplay(ctxFor(t), "totals", 1, "tester", "cluster", map[int32]int64{0: 3})
	if err != nil || !begun.Raised || begun.Epoch != 2 {
		t.Fatalf("BeginReplay on Cluster = %+v, %v", begun, err)
	}
}

func testExpiredClaim(t *testing.T, s *redischeckpoint.Store, rdb redis.UniversalClient, ns string) {
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	apply := func(ctx context.Context, seq uint64) {
		t.Helper()
		if n, err := p.ApplyBatch(ctx, []framework.Event{booked("process/t/a", seq, 5)}); err != nil || n != 1 {
			t.Fatalf("apply = %d, %v", n, err)
		}
	}
	modelLeft := func() int64 {
		n, err := rdb.Exists(ctx, p.Key("totals"), p.Key("events")).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	apply(ctx, 1)

	begun, err := s.BeginReplay(ctx, "totals", 0, "tester", "test", map[int32]int64{0: 0})
	if err != nil || !begun.Raised || begun.Epoch != 1 {
		t.Fatalf("BeginReplay = %+v, %v", begun, err)
	}
	const ttl = 300 * time.Millisecond
	if won, err := s.ClaimReset(ctx, "totals", 1, "zombie", ttl); err != nil || !won {
		t.Fatalf("ClaimReset = %v, %v", won, err)
	}
	zombie := controlplane.WithResetClaim(ctx, controlplane.ResetClaim{Projection: "totals", Epoch: 1, Holder: "zombie"})
	claimKey := ns + ":{totals}:reset-claim:1"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := rdb.Exists(ctx, claimKey).Result(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim did not expire")
		}
	}
	if won, err := s.ClaimReset(ctx, "totals", 1, "taker", time.Minute); err != nil || !won {
		t.Fatalf("the takeover's ClaimReset = %v, %v", won, err)
	}
	taker := controlplane.WithResetClaim(ctx, controlplane.ResetClaim{Projection: "totals", Epoch: 1, Holder: "taker"})

	// The zombie wakes while the taker resets.
	refused := func(what string, err error) {
		t.Helper()
		var lost *redischeckpoint.ResetClaimLostError
		if !errors.Is(err, controlplane.ErrResetClaimLost) || !errors.As(err, &lost) || lost.Epoch != 1 || lost.Holder != "zombie" {
			t.Errorf("%s with an expired claim = %v, want a ResetClaimLostError", what, err)
		}
	}
	refused("Reset", p.Reset(zombie))
	refused("Delete", s.Delete(zombie, "totals"))
	refused("CompleteReset", s.CompleteReset(zombie, "totals", 1))
	if n := modelLeft(); n != 2 {
		t.Errorf("the zombie deleted %d read-model keys", 2-n)
	}
	if ctl, _ := s.Control(ctx, "totals"); ctl.ResetDone != 0 {
		t.Errorf("the zombie marked the reset done: %+v", ctl)
	}

	// The taker resets and completes; writes of the new epoch begin.
	if err := p.Reset(taker); err != nil {
		t.Fatal(err)
	}
	if n := modelLeft(); n != 0 {
		t.Errorf("%d read-model keys survived the taker's reset", n)
	}
	if err := s.CompleteReset(taker, "totals", 1); err != nil {
		t.Fatal(err)
	}
	fence, err := s.AcquireFence(ctx, "totals", 0)
	if err != nil {
		t.Fatal(err)
	}
	apply(controlplane.WithFence(ctx, fence), 1)

	// The zombie wakes after the reset was done, even holding a claim
	// again: nothing is deleted.
	refused("Reset after the reset was done", p.Reset(zombie))
	if err := s.ReleaseResetClaim(ctx, "totals", 1, "taker"); err != nil {
		t.Fatal(err)
	}
	if won, err := s.ClaimReset(ctx, "totals", 1, "zombie", time.Minute); err != nil || won {
		t.Fatalf("ClaimReset of a reset done = %v, %v; want refused", won, err)
	}
	// Even holding the claim key (written by hand here), the reset being
	// done refuses every delete.
	if err := rdb.Set(ctx, claimKey, "zombie", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	refused("Reset with a claim after the reset was done", p.Reset(zombie))
	refused("Delete with a claim after the reset was done", s.Delete(zombie, "totals"))
	if n := modelLeft(); n != 2 {
		t.Errorf("the zombie deleted %d read-model keys of the new epoch", 2-n)
	}
	if c, _ := s.Cursors(ctx, "totals", []string{"process/t/a"}); c["process/t/a"] != 1 {
		t.Errorf("cursors after the zombie's reset: %v", c)
	}
	// CompleteReset of a reset already done is a no-op, claim or not.
	if err := s.CompleteReset(zombie, "totals", 1); err != nil {
		t.Errorf("CompleteReset of a reset done: %v", err)
	}

	// Without a claim in the context: a user's reset drops the model.
	if err := p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n := modelLeft(); n != 0 {
		t.Errorf("%d read-model keys survived an unclaimed reset", n)
	}
}

// TestBeginReplayOnce: BeginReplay pauses, raises the epoch, clears the
// cursors, heads and parks (recorded as resolved by the replay), records
// the progress baseline and requests the reset, in one step; called again
// for the same replay (a resumed one), it raises nothing twice.
func TestBeginReplayOnce(t *testing.T) {
	s, env, ns := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	if n, err := p.ApplyBatch(ctx, []framework.Event{booked("process/t/a", 1, 5)}); err != nil || n != 1 {
		t.Fatalf("apply = %d, %v", n, err)
	}
	if err := s.Park(ctx, "totals", controlplane.ParkedStream{StreamID: "process/t/b", Sequence: 2, Reason: "test", ParkedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	begun, err := s.BeginReplay(ctx, "totals", 0, "tester", "replay 1", map[int32]int64{0: 7, 1: 0})
	if err != nil || !begun.Raised || begun.Epoch != 1 || len(begun.Cleared) != 1 || begun.Cleared[0].StreamID != "process/t/b" {
		t.Fatalf("BeginReplay = %+v, %v", begun, err)
	}
	ctl, err := s.Control(ctx, "totals")
	if err != nil || !ctl.Paused || ctl.PausedBy != "tester" || ctl.PauseReason != "replay 1" || ctl.ResetEpoch != 1 || ctl.ResetDone != 0 {
		t.Errorf("control = %+v, %v; want paused by tester and the reset of epoch 1 requested", ctl, err)
	}
	if c, _ := s.Cursors(ctx, "totals", []string{"process/t/a"}); c["process/t/a"] != 0 {
		t.Errorf("cursors survived: %v", c)
	}
	if parked, _ := s.Parked(ctx, "totals"); len(parked) != 0 {
		t.Errorf("parks survived: %+v", parked)
	}
	if res, _ := s.Resolutions(ctx, "totals", 10); len(res) != 1 || res[0].Action != controlplane.ResolveReplay {
		t.Errorf("resolutions = %+v", res)
	}
	if pr, err := s.Progress(ctx, "totals", 0); err != nil || !pr.Recorded || pr.Next != 7 {
		t.Errorf("progress of partition 0 = %+v, %v; want the baseline 7", pr, err)
	}
	// Resumed: nothing is raised twice, the pause holds.
	if err := s.SetPaused(ctx, "totals", false, "someone", ""); err != nil {
		t.Fatal(err)
	}
	again, err := s.BeginReplay(ctx, "totals", 0, "tester", "replay 1", map[int32]int64{0: 9})
	if err != nil || again.Raised || again.Epoch != 1 {
		t.Errorf("BeginReplay again = %+v, %v; want epoch 1, not raised", again, err)
	}
	if epoch, _ := s.Epoch(ctx, "totals"); epoch != 1 {
		t.Errorf("epoch %d after a resumed BeginReplay, want 1", epoch)
	}
	if ctl, _ := s.Control(ctx, "totals"); !ctl.Paused {
		t.Error("a resumed BeginReplay did not pause")
	}
	if pr, _ := s.Progress(ctx, "totals", 0); pr.Next != 7 {
		t.Errorf("progress moved to %d by a resumed BeginReplay", pr.Next)
	}
	// The replay's record stays untouched.
	if raw, _ := env.Client.HGet(ctx, ns+":{totals}:control", "replay").Result(); raw != "" {
		t.Errorf("BeginReplay wrote a replay record: %s", raw)
	}
}
