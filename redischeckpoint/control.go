package redischeckpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
)

// Control plane keys, beside the projection's other keys:
//
//	projector:{billing}:control     hash: paused, paused_by, pause_reason,
//	                                paused_at, reset_epoch, reset_done, replay (JSON)
//	projector:{billing}:replicas    hash: replica ID -> JSON ReplicaInfo
//	projector:{billing}:reset-claim:<epoch>  the replica resetting that epoch
//
// A replay's reset is fenced by its claim: with the claim in the context
// ([controlplane.WithResetClaim]), every delete of [AtomicProjection.Reset]
// and [Store.Delete], and [Store.CompleteReset], runs in a script that
// first checks that the claim's holder still holds the claim and that the
// reset is not recorded as done ([ResetClaimLostError] otherwise).

// Control returns the projection's control state (the zero Control when
// nothing was ever asked).
func (s *Store) Control(ctx context.Context, projection string) (controlplane.Control, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return controlplane.Control{}, err
	}
	h, err := s.client.HGetAll(ctx, k.control).Result()
	if err != nil {
		return controlplane.Control{}, fmt.Errorf("redischeckpoint: control of %s: %w", projection, err)
	}
	var c controlplane.Control
	c.Paused = h["paused"] == "1"
	c.PausedBy, c.PauseReason = h["paused_by"], h["pause_reason"]
	if t := h["paused_at"]; t != "" {
		c.PausedAt, _ = time.Parse(time.RFC3339Nano, t)
	}
	for field, dst := range map[string]*uint64{"reset_epoch": &c.ResetEpoch, "reset_done": &c.ResetDone} {
		if v := h[field]; v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return controlplane.Control{}, fmt.Errorf("redischeckpoint: key %scontrol field %s: %q is not a non-negative integer", k.base, field, v)
			}
			*dst = n
		}
	}
	if raw := h["replay"]; raw != "" {
		var r controlplane.Replay
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return controlplane.Control{}, fmt.Errorf("redischeckpoint: key %scontrol field replay: %w", k.base, err)
		}
		c.Replay = &r
	}
	return c, nil
}

// SetPaused pauses or resumes the projection's replicas; by and reason are
// recorded.
func (s *Store) SetPaused(ctx context.Context, projection string, paused bool, by, reason string) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	fields := map[string]any{"paused": "0"}
	if paused {
		fields = map[string]any{"paused": "1", "paused_by": by, "pause_reason": reason, "paused_at": time.Now().UTC().Format(time.RFC3339Nano)}
	}
	if err := s.client.HSet(ctx, k.control, fields).Err(); err != nil {
		return fmt.Errorf("redischeckpoint: pause %s: %w", projection, err)
	}
	return nil
}

// SetReplay records the replay's current phase (nil clears it).
func (s *Store) SetReplay(ctx context.Context, projection string, r *controlplane.Replay) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if r == nil {
		return s.client.HDel(ctx, k.control, "replay").Err()
	}
	r.UpdatedAt = time.Now().UTC()
	raw, _ := json.Marshal(r)
	if err := s.client.HSet(ctx, k.control, "replay", raw).Err(); err != nil {
		return fmt.Errorf("redischeckpoint: record replay of %s: %w", projection, err)
	}
	return nil
}

// raiseScript sets a numeric control field to ARGV[1] unless it is higher.
var raiseScript = `
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1`

func (s *Store) raise(ctx context.Context, projection, field string, epoch uint64) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if err := s.client.Eval(ctx, raiseScript, []string{k.control}, field, strconv.FormatUint(epoch, 10)).Err(); err != nil {
		return fmt.Errorf("redischeckpoint: %s of %s: %w", field, projection, err)
	}
	return nil
}

// RequestReset asks the replicas to drop the read model of epoch before
// consuming in it.
func (s *Store) RequestReset(ctx context.Context, projection string, epoch uint64) error {
	return s.raise(ctx, projection, "reset_epoch", epoch)
}

// CompleteReset records that the read model of epoch was dropped. Called
// with a [controlplane.ResetClaim] in ctx (the runner does), it records it only
// while the claim's holder still holds the claim on epoch's reset: a
// replica that lost its claim (it was frozen past it and another replica
// took the reset over) gets a [*ResetClaimLostError] and marks nothing. A
// reset recorded as done already is not an error.
func (s *Store) CompleteReset(ctx context.Context, projection string, epoch uint64) error {
	claim, ok := controlplane.ResetClaimFrom(ctx)
	if !ok {
		return s.raise(ctx, projection, "reset_done", epoch)
	}
	k, err := s.claimKeys(projection, claim, epoch)
	if err != nil {
		return err
	}
	err = completeResetScript.Run(ctx, s.client, []string{k.claim, k.control}, claim.Holder, strconv.FormatUint(epoch, 10)).Err()
	if err != nil {
		return s.claimError(projection, claim, "mark the reset done", err)
	}
	return nil
}

// ResetClaimLostError reports a step of a reset of the read model (a
// delete, marking it done) refused because Holder no longer holds the claim
// on the reset of Epoch, or that reset was done already. Nothing was
// deleted or marked. It matches [controlplane.ErrResetClaimLost].
type ResetClaimLostError struct {
	Projection string
	Epoch      uint64
	Holder     string
	Step       string // what was refused: "delete read-model keys", "delete the cursors", "mark the reset done"
	Detail     string // why: who holds the claim now, or that the reset was done
}

func (e *ResetClaimLostError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s: %s for the reset of epoch %d refused: replica %s no longer holds the reset claim (%s)",
		e.Projection, e.Step, e.Epoch, e.Holder, e.Detail)
}

// Is matches [controlplane.ErrResetClaimLost].
func (e *ResetClaimLostError) Is(target error) bool { return target == controlplane.ErrResetClaimLost }

// claimed are the keys a claimed step of a reset checks: the claim and the
// control hash, in the projection's slot.
type claimed struct {
	keys
	claim string
}

// claimKeys returns the keys of projection's reset claim, checking that
// claim is one on projection's reset (of epoch, unless epoch is 0).
func (s *Store) claimKeys(projection string, claim controlplane.ResetClaim, epoch uint64) (claimed, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return claimed{}, err
	}
	if claim.Projection != projection || (epoch != 0 && claim.Epoch != epoch) || claim.Holder == "" {
		return claimed{}, fmt.Errorf("redischeckpoint: the context carries a reset claim on %s epoch %d by %q, not one on the reset of %s epoch %d",
			claim.Projection, claim.Epoch, claim.Holder, projection, epoch)
	}
	return claimed{keys: k, claim: k.base + "reset-claim:" + strconv.FormatUint(claim.Epoch, 10)}, nil
}

// claimError translates the error of a claimed step.
func (s *Store) claimError(projection string, claim controlplane.ResetClaim, step string, err error) error {
	if hasReplyPrefix(err, "RESETCLAIM ") {
		return &ResetClaimLostError{Projection: projection, Epoch: claim.Epoch, Holder: claim.Holder, Step: step,
			Detail: strings.TrimPrefix(err.Error(), "RESETCLAIM ")}
	}
	return fmt.Errorf("redischeckpoint: %s of %s epoch %d: %w", step, projection, claim.Epoch, err)
}

// unlinkClaimed unlinks keys of projection's read model on c (the master
// that holds them) while claim holds: see [AtomicProjection.Reset].
func (s *Store) unlinkClaimed(ctx context.Context, c redis.Scripter, k claimed, claim controlplane.ResetClaim, keys []string) error {
	err := claimedUnlinkScript.Run(ctx, c, append([]string{k.claim, k.control}, keys...), claim.Holder, strconv.FormatUint(claim.Epoch, 10)).Err()
	if err != nil {
		return s.claimError(k.name, claim, "delete read-model keys", err)
	}
	return nil
}

// ClaimReset makes replica the one to reset epoch's read model for ttl,
// unless another replica holds the claim. The claimant renews it while its
// reset runs (RenewResetClaim) and releases it when the reset failed
// (ReleaseResetClaim); the claim of a replica that died mid-reset expires
// after ttl. A reset recorded as done ([Store.CompleteReset]) cannot be
// claimed: a replica that read it as pending just before does not reset
// again.
func (s *Store) ClaimReset(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return false, err
	}
	n, err := claimResetScript.Run(ctx, s.client, []string{k.base + "reset-claim:" + strconv.FormatUint(epoch, 10), k.control},
		replica, strconv.FormatUint(epoch, 10), strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)).Int()
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: claim the reset of %s epoch %d: %w", projection, epoch, err)
	}
	return n == 1, nil
}

// claimScript renews (ARGV[2] = milliseconds) or, with ARGV[2] = "",
// releases the claim KEYS[1] while replica ARGV[1] holds it; it answers 1
// when it did.
const claimScript = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`

// RenewResetClaim extends replica's claim on the reset of epoch by ttl and
// reports whether replica still held it: a replica renews its claim while
// its reset runs, so that no other replica resets too.
func (s *Store) RenewResetClaim(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error) {
	return s.claim(ctx, projection, epoch, replica, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
}

// ReleaseResetClaim gives up replica's claim on the reset of epoch (its
// reset failed, or completed), so that another replica may claim it at
// once.
func (s *Store) ReleaseResetClaim(ctx context.Context, projection string, epoch uint64, replica string) error {
	_, err := s.claim(ctx, projection, epoch, replica, "")
	return err
}

func (s *Store) claim(ctx context.Context, projection string, epoch uint64, replica, ttl string) (bool, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return false, err
	}
	n, err := s.client.Eval(ctx, claimScript, []string{k.base + "reset-claim:" + strconv.FormatUint(epoch, 10)}, replica, ttl).Int()
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: the reset claim of %s epoch %d: %w", projection, epoch, err)
	}
	return n == 1, nil
}

// Heartbeat records what a replica reports about itself.
func (s *Store) Heartbeat(ctx context.Context, projection string, info controlplane.ReplicaInfo) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	info.SeenAt = time.Now().UTC()
	raw, _ := json.Marshal(info)
	// A closed version (replaced or abandoned by a rebuild, perhaps
	// dropped already) takes no report: a replica that still runs it
	// must not bring its keys back.
	n, err := s.client.Eval(ctx, heartbeatScript, []string{k.meta, k.base + "replicas"}, info.ID, raw).Int()
	if err != nil {
		return fmt.Errorf("redischeckpoint: report replica %s of %s: %w", info.ID, projection, err)
	}
	if n == 0 {
		return &VersionClosedError{Projection: projection, Partition: -1}
	}
	return nil
}

// heartbeatScript records replica ARGV[1]'s report ARGV[2] in KEYS[2]
// unless the version's meta KEYS[1] is closed; it answers 1 when it did.
const heartbeatScript = `
if redis.call('HGET', KEYS[1], 'closed') then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1`

// RemoveReplica forgets a replica (it stopped).
func (s *Store) RemoveReplica(ctx context.Context, projection, id string) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	return s.client.HDel(ctx, k.base+"replicas", id).Err()
}

// Replicas returns what the replicas reported, newest first, dropping
// (and deleting) reports older than staleAfter.
func (s *Store) Replicas(ctx context.Context, projection string, staleAfter time.Duration) ([]controlplane.ReplicaInfo, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return nil, err
	}
	h, err := s.client.HGetAll(ctx, k.base+"replicas").Result()
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: replicas of %s: %w", projection, err)
	}
	var out []controlplane.ReplicaInfo
	for id, raw := range h {
		var info controlplane.ReplicaInfo
		if err := json.Unmarshal([]byte(raw), &info); err != nil || time.Since(info.SeenAt) > staleAfter {
			_ = s.client.HDel(ctx, k.base+"replicas", id).Err()
			continue
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b controlplane.ReplicaInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
