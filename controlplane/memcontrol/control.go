package memcontrol

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

// control is a projection's control state.
type control struct {
	paused      bool
	pausedBy    string
	pauseReason string
	pausedAt    time.Time
	resetEpoch  uint64
	resetDone   uint64
	replay      []byte // JSON controlplane.Replay; nil when none
}

// claim is a replica's claim on the reset of an epoch's read model.
type claim struct {
	holder string
	until  time.Time
}

// holder returns who holds the claim on epoch's reset ("" when nobody,
// or the claim expired).
func (p *projection) holder(epoch uint64) string {
	c, ok := p.claims[epoch]
	if !ok || !time.Now().Before(c.until) {
		delete(p.claims, epoch)
		return ""
	}
	return c.holder
}

// Control returns the projection's control state (the zero Control when
// nothing was ever asked).
func (s *Store) Control(ctx context.Context, projection string) (controlplane.Control, error) {
	p, err := s.lock(projection)
	if err != nil {
		return controlplane.Control{}, err
	}
	defer s.mu.Unlock()
	c := p.control
	out := controlplane.Control{Paused: c.paused, PausedBy: c.pausedBy, PauseReason: c.pauseReason, PausedAt: c.pausedAt,
		ResetEpoch: c.resetEpoch, ResetDone: c.resetDone}
	if c.replay != nil {
		var r controlplane.Replay
		if err := json.Unmarshal(c.replay, &r); err != nil {
			return controlplane.Control{}, fmt.Errorf("memcontrol: replay of %s: %w", projection, err)
		}
		out.Replay = &r
	}
	return out, nil
}

// SetPaused pauses or resumes the projection's replicas; by and reason are
// recorded with a pause. A resume keeps the last pause's by, reason and
// time, as redischeckpoint does.
func (s *Store) SetPaused(ctx context.Context, projection string, paused bool, by, reason string) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if !paused {
		p.control.paused = false
		return nil
	}
	p.control.paused, p.control.pausedBy, p.control.pauseReason, p.control.pausedAt = true, by, reason, now()
	return nil
}

// SetReplay records the replay's current phase, setting r.UpdatedAt (nil
// clears it).
func (s *Store) SetReplay(ctx context.Context, projection string, r *controlplane.Replay) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if r == nil {
		p.control.replay = nil
		return nil
	}
	r.UpdatedAt = now()
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("memcontrol: record replay of %s: %w", projection, err)
	}
	p.control.replay = raw
	return nil
}

// RequestReset asks the replicas to drop the read model of epoch before
// consuming in it (it never lowers the epoch requested).
func (s *Store) RequestReset(ctx context.Context, projection string, epoch uint64) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	p.control.resetEpoch = max(p.control.resetEpoch, epoch)
	return nil
}

// CompleteReset records that the read model of epoch was dropped. With a
// [controlplane.ResetClaim] in ctx it records it only while the claim's
// holder holds the claim on epoch's reset, else it returns an error
// matching [controlplane.ErrResetClaimLost]. A reset recorded as done
// already is not an error.
func (s *Store) CompleteReset(ctx context.Context, projection string, epoch uint64) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, ok := controlplane.ResetClaimFrom(ctx)
	if !ok {
		p.control.resetDone = max(p.control.resetDone, epoch)
		return nil
	}
	if err := checkClaim(projection, c, epoch); err != nil {
		return err
	}
	if p.control.resetDone >= epoch {
		return nil
	}
	if err := p.claimRefusal(projection, c, "mark the reset done"); err != nil {
		return err
	}
	p.control.resetDone = epoch
	return nil
}

// checkClaim checks that c is a claim on projection's reset (of epoch,
// unless epoch is 0).
func checkClaim(projection string, c controlplane.ResetClaim, epoch uint64) error {
	if c.Projection != projection || (epoch != 0 && c.Epoch != epoch) || c.Holder == "" {
		return fmt.Errorf("memcontrol: the context carries a reset claim on %s epoch %d by %q, not one on the reset of %s epoch %d",
			c.Projection, c.Epoch, c.Holder, projection, epoch)
	}
	return nil
}

// claimRefusal refuses a step of a reset unless c's holder still holds the
// claim and the reset of c.Epoch is not done. s.mu must be held.
func (p *projection) claimRefusal(projection string, c controlplane.ResetClaim, step string) error {
	held := p.holder(c.Epoch)
	detail := ""
	switch {
	case held != c.Holder:
		if held == "" {
			held = "nobody"
		}
		detail = "the claim is held by " + held + " now"
	case p.control.resetDone >= c.Epoch:
		detail = fmt.Sprintf("the reset of epoch %d was done already", c.Epoch)
	default:
		return nil
	}
	return &ResetClaimLostError{Projection: projection, Epoch: c.Epoch, Holder: c.Holder, Step: step, Detail: detail}
}

// ResetClaimLostError reports a step of a reset of the read model refused
// because Holder no longer holds the claim on the reset of Epoch, or that
// reset was done already. It matches [controlplane.ErrResetClaimLost].
type ResetClaimLostError struct {
	Projection string
	Epoch      uint64
	Holder     string
	Step       string // what was refused: "delete the cursors", "mark the reset done"
	Detail     string // why
}

func (e *ResetClaimLostError) Error() string {
	return fmt.Sprintf("memcontrol: projection %s: %s for the reset of epoch %d refused: replica %s no longer holds the reset claim (%s)",
		e.Projection, e.Step, e.Epoch, e.Holder, e.Detail)
}

// Is matches [controlplane.ErrResetClaimLost].
func (e *ResetClaimLostError) Is(target error) bool { return target == controlplane.ErrResetClaimLost }

// ClaimReset makes replica the one to reset epoch's read model for ttl,
// unless another replica holds the claim (or replica holds it already:
// use RenewResetClaim) or the reset is recorded as done.
func (s *Store) ClaimReset(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error) {
	p, err := s.lock(projection)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if p.control.resetDone >= epoch || p.holder(epoch) != "" {
		return false, nil
	}
	p.claims[epoch] = claim{holder: replica, until: time.Now().Add(max(ttl, time.Millisecond))}
	return true, nil
}

// RenewResetClaim extends replica's claim on the reset of epoch by ttl and
// reports whether replica still held it.
func (s *Store) RenewResetClaim(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error) {
	p, err := s.lock(projection)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if p.holder(epoch) != replica {
		return false, nil
	}
	p.claims[epoch] = claim{holder: replica, until: time.Now().Add(max(ttl, time.Millisecond))}
	return true, nil
}

// ReleaseResetClaim gives up replica's claim on the reset of epoch; a
// claim held by another replica stays.
func (s *Store) ReleaseResetClaim(ctx context.Context, projection string, epoch uint64, replica string) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if p.holder(epoch) == replica {
		delete(p.claims, epoch)
	}
	return nil
}

// Heartbeat records what a replica reports about itself, setting SeenAt.
// A closed version takes no report ([controlplane.ErrVersionClosed]).
func (s *Store) Heartbeat(ctx context.Context, projection string, info controlplane.ReplicaInfo) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if p.closed {
		return &VersionClosedError{Projection: projection, Partition: -1}
	}
	info.SeenAt = now()
	raw, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("memcontrol: report replica %s of %s: %w", info.ID, projection, err)
	}
	p.replicas[info.ID] = raw
	return nil
}

// RemoveReplica forgets a replica (it stopped).
func (s *Store) RemoveReplica(ctx context.Context, projection, id string) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(p.replicas, id)
	return nil
}

// Replicas returns what the replicas reported, by ID, dropping (and
// forgetting) reports older than staleAfter.
func (s *Store) Replicas(ctx context.Context, projection string, staleAfter time.Duration) ([]controlplane.ReplicaInfo, error) {
	p, err := s.lock(projection)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []controlplane.ReplicaInfo
	for id, raw := range p.replicas {
		var info controlplane.ReplicaInfo
		if err := json.Unmarshal(raw, &info); err != nil || time.Since(info.SeenAt) > staleAfter {
			delete(p.replicas, id)
			continue
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b controlplane.ReplicaInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Epoch returns the projection's current epoch (0 before the first
// replay).
func (s *Store) Epoch(ctx context.Context, projection string) (uint64, error) {
	p, err := s.lock(projection)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return p.epoch, nil
}

// BumpEpoch is BumpEpochAt without a progress baseline.
func (s *Store) BumpEpoch(ctx context.Context, projection string) (uint64, error) {
	return s.BumpEpochAt(ctx, projection, nil)
}

// BumpEpochAt starts a new epoch of the projection, for a replay that
// reset the consumer group's offsets to start: it raises the epoch and
// drops the cursors, heads, partition progress, parked streams and
// requested resolutions (each cleared park goes to the audit of
// resolutions as resolved by the replay), and records start as the new
// epoch's progress. Fences of older epochs no longer count. It returns the
// new epoch.
func (s *Store) BumpEpochAt(ctx context.Context, projection string, start map[int32]int64) (uint64, error) {
	p, err := s.lock(projection)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	parked, err := p.parkedStreams(projection, true)
	if err != nil {
		return 0, err
	}
	if err := p.raiseEpoch(parked, start); err != nil {
		return 0, err
	}
	return p.epoch, nil
}

// raiseEpoch raises the epoch and clears the old epoch's state, recording
// parked (sorted by stream) in the audit. s.mu must be held.
func (p *projection) raiseEpoch(parked []controlplane.ParkedStream, start map[int32]int64) error {
	at := now()
	audits := make([][]byte, 0, len(parked))
	for _, ps := range parked {
		ps.Resolving = nil
		raw, err := json.Marshal(controlplane.Resolution{StreamID: ps.StreamID, Action: controlplane.ResolveReplay, By: "replay",
			Reason: "the replay dropped the read model: the stream is rebuilt from its first event", At: at, Done: at, Parked: ps})
		if err != nil {
			return fmt.Errorf("memcontrol: encode the cleared park of %s: %w", ps.StreamID, err)
		}
		audits = append(audits, raw)
	}
	p.epoch++
	p.cursors, p.heads, p.progress = map[string]uint64{}, map[string]head{}, map[int32]int64{}
	p.parked, p.resolving = map[string]parkRecord{}, map[string]request{}
	for _, raw := range audits {
		p.audit(raw)
	}
	for partition, off := range start {
		p.progress[partition] = off
	}
	return nil
}

// BeginReplay is the first step of a replay to the start, in one atomic
// step: it pauses the replicas (a pause already there is kept as it was),
// raises the epoch as [Store.BumpEpochAt] does, and requests the reset of
// the read model for the new epoch. The epoch is raised only while it is
// still from: a second call for the same replay only pauses (Raised
// false). A from above the current epoch is an error.
func (s *Store) BeginReplay(ctx context.Context, projection string, from uint64, by, reason string, start map[int32]int64) (controlplane.ReplayBegun, error) {
	p, err := s.lock(projection)
	if err != nil {
		return controlplane.ReplayBegun{}, err
	}
	defer s.mu.Unlock()
	pause := func() {
		if !p.control.paused {
			p.control.paused, p.control.pausedBy, p.control.pauseReason, p.control.pausedAt = true, by, reason, now()
		}
	}
	if p.epoch != from {
		if p.epoch < from {
			return controlplane.ReplayBegun{}, fmt.Errorf("memcontrol: begin the replay of %s: the projection is at epoch %d, older than epoch %d the replay started from", projection, p.epoch, from)
		}
		pause()
		return controlplane.ReplayBegun{Epoch: p.epoch}, nil
	}
	parked, err := p.parkedStreams(projection, false)
	if err != nil {
		return controlplane.ReplayBegun{}, err
	}
	pause()
	if err := p.raiseEpoch(parked, start); err != nil {
		return controlplane.ReplayBegun{}, err
	}
	p.control.resetEpoch = max(p.control.resetEpoch, p.epoch)
	return controlplane.ReplayBegun{Epoch: p.epoch, Raised: true, Cleared: parked}, nil
}
