package kafkarunner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

func defaultReplicaID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ReplicaID returns the name this replica reports under.
func (r *Runner) ReplicaID() string { return r.cfg.ReplicaID }

// State returns what the replica is doing: "starting", "waiting" (for
// Kafka or Redis to answer at start: LastError says why), "running",
// "paused", "waiting-reset", "resetting" or "stopped" ("" before Run).
func (r *Runner) State() string {
	s, _ := r.state.Load().(string)
	return s
}

// resetClaimTTL is how long a reset claim lasts without renewal: the
// claimant renews it every third of it while its reset runs, so another
// replica takes the reset over this long after the claimant died. A
// variable for tests.
var resetClaimTTL = 30 * time.Second

// afterControlRead, when set (by tests), is called with the replica's ID
// once waitRunnable decided from the control state it read that the
// replica may consume, before the replica joins the group: a test holds a
// replica there to force the race of a replica that joins while a replay
// begins.
var afterControlRead atomic.Pointer[func(replica string)]

// waitRunnable returns once the replica may consume: not paused, and no
// reset of the read model pending. When a reset is pending, one replica
// claims it and calls the projection's Reset; the others wait for it.
//
// What it read may be stale by the time the replica has joined: a replay
// may have begun meanwhile. That is safe: a replay raises the epoch and
// requests the reset in one step before anything else, so every write the
// replica then makes is refused (fenced, or the reset pending), and the
// replica leaves the group again (see partition.run).
func (r *Runner) waitRunnable(ctx context.Context) error {
	if r.cfg.Control == nil {
		return nil
	}
	name := r.cfg.Projection.Name()
	for {
		c, err := r.cfg.Control.Control(ctx, name)
		switch {
		case err != nil:
			r.state.Store("waiting") // for Redis
			r.setLastError(err)
			r.cfg.Logger.WarnContext(ctx, "cannot read the control state; retrying", "err", err)
		case c.Paused:
			if r.State() != "paused" {
				r.cfg.Logger.InfoContext(ctx, "paused", "by", c.PausedBy, "reason", c.PauseReason)
			}
			r.state.Store("paused")
		case c.ResetPending():
			r.state.Store("waiting-reset")
			done, err := r.maybeReset(ctx, c.ResetEpoch)
			switch {
			case errors.Is(err, controlplane.ErrResetClaimLost):
				r.setLastError(err)
				r.cfg.Logger.WarnContext(ctx, "resetting the read model stopped: this replica lost its claim on it (it was frozen or cut off past the claim's lifetime) and deleted nothing more; another replica resets it",
					"epoch", c.ResetEpoch, "err", err)
			case err != nil:
				r.setLastError(err)
				r.cfg.Logger.ErrorContext(ctx, "resetting the read model failed", "epoch", c.ResetEpoch, "err", err)
			case done:
				continue // read the control state again at once: consume unless paused
			}
		default:
			if hook := afterControlRead.Load(); hook != nil {
				(*hook)(r.cfg.ReplicaID)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.ControlRefresh):
		}
	}
}

// maybeReset resets the read model for epoch if this replica wins the
// claim for it; done reports that it did, and recorded it.
//
// The projection's Reset gets the claim in its context
// ([controlplane.WithResetClaim]): a store that supports it (redischeckpoint)
// deletes only while this replica still holds the claim and the reset is
// not done, so a replica frozen in its reset past the claim's lifetime
// deletes nothing when it wakes, after another replica took the reset over
// and the rebuild began. Marking the reset done checks the claim the same
// way.
func (r *Runner) maybeReset(ctx context.Context, epoch uint64) (done bool, err error) {
	name := r.cfg.Projection.Name()
	resetter, ok := r.cfg.Projection.(framework.Resetter)
	if !ok {
		return false, fmt.Errorf("kafkarunner: a replay asks to reset projection %s, which does not implement framework.Resetter", name)
	}
	ttl := resetClaimTTL
	won, err := r.cfg.Control.ClaimReset(ctx, name, epoch, r.cfg.ReplicaID, ttl)
	if err != nil || !won {
		return false, err
	}
	claim := controlplane.ResetClaim{Projection: name, Epoch: epoch, Holder: r.cfg.ReplicaID}
	release := func() {
		if rerr := r.cfg.Control.ReleaseResetClaim(context.WithoutCancel(ctx), name, epoch, r.cfg.ReplicaID); rerr != nil {
			r.cfg.Logger.WarnContext(ctx, "cannot release the reset claim; it expires", "epoch", epoch, "err", rerr)
		}
	}
	r.state.Store("resetting")
	r.cfg.Logger.InfoContext(ctx, "resetting the read model for a replay", "epoch", epoch)
	// The claim is renewed while the reset runs: a slow reset is not
	// taken over by another replica. If the renewal finds the claim lost
	// (Redis lost it, or this replica was frozen past it), the reset is
	// cancelled.
	resetCtx, cancel := context.WithCancel(controlplane.WithResetClaim(ctx, claim))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-resetCtx.Done():
				return
			case <-t.C:
			}
			if held, err := r.cfg.Control.RenewResetClaim(resetCtx, name, epoch, r.cfg.ReplicaID, ttl); err == nil && !held {
				r.cfg.Logger.WarnContext(ctx, "lost the claim on the read model's reset while resetting; stopping it", "epoch", epoch)
				cancel()
				return
			}
		}
	}()
	err = resetter.Reset(resetCtx)
	cancel()
	<-renewed
	if err != nil {
		// Another replica (or this one) may try at once.
		release()
		return false, fmt.Errorf("kafkarunner: reset %s for epoch %d: %w", name, epoch, err)
	}
	if err := r.cfg.Control.CompleteReset(controlplane.WithResetClaim(ctx, claim), name, epoch); err != nil {
		release()
		return false, fmt.Errorf("kafkarunner: record the reset of %s for epoch %d: %w", name, epoch, err)
	}
	// The claim is released: the store refuses a claim on a reset
	// recorded as done, so a replica that read the reset as pending just
	// before cannot reset again.
	release()
	r.cfg.Logger.InfoContext(ctx, "read model reset for the replay", "epoch", epoch)
	return true, nil
}

// watchControl stops consumption (calls stop) when the replica is paused
// or a reset is requested. (A replica learns it sooner when a replay began:
// its next write is refused, and the partition that got the refusal stops
// consumption the same way; see partition.run.)
func (r *Runner) watchControl(ctx context.Context, stop context.CancelFunc) {
	t := time.NewTicker(r.cfg.ControlRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, err := r.cfg.Control.Control(ctx, r.cfg.Projection.Name())
		if err != nil {
			continue // consumption goes on; the next read may work
		}
		if c.Paused || c.ResetPending() {
			r.cfg.Logger.InfoContext(ctx, "leaving the group", "paused", c.Paused, "reset_epoch", c.ResetEpoch)
			stop()
			return
		}
	}
}

// heartbeat reports the replica every ControlRefresh until ctx is done,
// then removes the report.
func (r *Runner) heartbeat(ctx context.Context) {
	name := r.cfg.Projection.Name()
	_, resettable := r.cfg.Projection.(framework.Resetter)
	t := time.NewTicker(r.cfg.ControlRefresh)
	defer t.Stop()
	for {
		st := r.Stats()
		info := controlplane.ReplicaInfo{
			ID: r.cfg.ReplicaID, Group: r.cfg.Group, Partitions: r.Assigned(), State: r.State(),
			Applied: st.Applied, Skipped: st.Skipped, Parked: st.Parked, Held: st.Held, Unverified: st.Unverified,
			LastError: r.LastError(), LastErrorAt: r.lastErrorAt(), Warnings: r.Warnings(), Resettable: resettable,
		}
		for _, l := range r.Lag() {
			info.LagSeconds = max(info.LagSeconds, l.Seconds)
		}
		for _, p := range r.Partitions() {
			if p.State != PartitionRunning {
				info.Problems = append(info.Problems, p)
			}
		}
		info.Host, _ = os.Hostname()
		_ = r.cfg.Control.Heartbeat(ctx, name, info)
		select {
		case <-ctx.Done():
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = r.cfg.Control.RemoveReplica(cleanup, name, r.cfg.ReplicaID)
			cancel()
			return
		case <-t.C:
		}
	}
}
