package kafkastore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

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

// State returns what the replica is doing: "running", "paused",
// "waiting-reset", "resetting" or "stopped" ("" before Run).
func (r *Runner) State() string {
	s, _ := r.state.Load().(string)
	return s
}

// resetClaimTTL is how long a reset claim lasts without renewal: the
// claimant renews it every third of it while its reset runs, so another
// replica takes the reset over this long after the claimant died. A
// variable for tests.
var resetClaimTTL = 30 * time.Second

// waitRunnable returns once the replica may consume: not paused, and no
// reset of the read model pending. When a reset is pending, one replica
// claims it and calls the projection's Reset; the others wait for it.
func (r *Runner) waitRunnable(ctx context.Context) error {
	if r.cfg.Control == nil {
		return nil
	}
	name := r.cfg.Projection.Name()
	for {
		c, err := r.cfg.Control.Control(ctx, name)
		switch {
		case err != nil:
			r.setLastError(err)
			r.cfg.Logger.WarnContext(ctx, "cannot read the control state; retrying", "err", err)
		case c.Paused:
			if r.State() != "paused" {
				r.cfg.Logger.InfoContext(ctx, "paused", "by", c.PausedBy, "reason", c.PauseReason)
			}
			r.state.Store("paused")
		case c.ResetPending():
			r.state.Store("waiting-reset")
			if err := r.maybeReset(ctx, c.ResetEpoch); err != nil {
				r.setLastError(err)
				r.cfg.Logger.ErrorContext(ctx, "resetting the read model failed", "epoch", c.ResetEpoch, "err", err)
			}
		default:
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
// claim for it.
func (r *Runner) maybeReset(ctx context.Context, epoch uint64) error {
	name := r.cfg.Projection.Name()
	resetter, ok := r.cfg.Projection.(framework.Resetter)
	if !ok {
		return fmt.Errorf("kafkastore: a replay asks to reset projection %s, which does not implement framework.Resetter", name)
	}
	ttl := resetClaimTTL
	won, err := r.cfg.Control.ClaimReset(ctx, name, epoch, r.cfg.ReplicaID, ttl)
	if err != nil || !won {
		return err
	}
	r.state.Store("resetting")
	r.cfg.Logger.InfoContext(ctx, "resetting the read model for a replay", "epoch", epoch)
	// The claim is renewed while the reset runs: a slow reset is not
	// taken over by another replica. If the renewal finds the claim lost
	// (Redis lost it, or this replica was frozen past it), the reset is
	// cancelled.
	resetCtx, cancel := context.WithCancel(ctx)
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
				r.cfg.Logger.ErrorContext(ctx, "lost the claim on the read model's reset while resetting; stopping it", "epoch", epoch)
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
		if rerr := r.cfg.Control.ReleaseResetClaim(context.WithoutCancel(ctx), name, epoch, r.cfg.ReplicaID); rerr != nil {
			r.cfg.Logger.WarnContext(ctx, "cannot release the reset claim; it expires", "epoch", epoch, "err", rerr)
		}
		return fmt.Errorf("kafkastore: reset %s for epoch %d: %w", name, epoch, err)
	}
	return r.cfg.Control.CompleteReset(ctx, name, epoch)
}

// watchControl stops consumption (calls stop) when the replica is paused
// or a reset is requested.
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
		info := framework.ReplicaInfo{
			ID: r.cfg.ReplicaID, Group: r.cfg.Group, Partitions: r.Assigned(), State: r.State(),
			Applied: st.Applied, Skipped: st.Skipped, Parked: st.Parked, Unverified: st.Unverified,
			LastError: r.LastError(), LastErrorAt: r.lastErrorAt(), Warnings: r.Warnings(), Resettable: resettable,
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
