package controlplane

import (
	"context"
	"errors"
	"time"
)

// Control is the shared control state of a projection's replicas: what an
// admin asked of them. It lives where every replica sees it (Redis, in
// package redischeckpoint).
type Control struct {
	// Paused replicas finish their batch, store their cursors, commit and
	// leave the consumer group, and stay out until resumed. It survives
	// replica restarts.
	Paused      bool      `json:"paused"`
	PausedBy    string    `json:"paused_by,omitempty"`
	PauseReason string    `json:"pause_reason,omitempty"`
	PausedAt    time.Time `json:"paused_at,omitzero"`

	// ResetEpoch is the epoch whose read model must be dropped before
	// anyone consumes; ResetDone the last epoch for which a replica did.
	// Exactly one replica resets (it claims the epoch first). While
	// ResetEpoch is above ResetDone, every fenced write is refused
	// ([ErrResetPending]).
	ResetEpoch uint64 `json:"reset_epoch,omitempty"`
	ResetDone  uint64 `json:"reset_done,omitempty"`

	// Replay is the replay in progress or the last one, if any.
	Replay *Replay `json:"replay,omitempty"`
}

// ResetPending reports whether replicas must wait for (or do) a reset of
// the read model before consuming.
func (c Control) ResetPending() bool { return c.ResetEpoch > c.ResetDone }

// Replay records a replay: a rebuild of the read model from the events, by
// resetting the consumer group's offsets. Each phase is recorded before it
// starts, so an interrupted replay can be resumed or aborted.
type Replay struct {
	ID        string `json:"id"`
	By        string `json:"by"`
	Reason    string `json:"reason,omitempty"`
	To        string `json:"to"` // "start", "time:<RFC 3339>" or "offsets:<partition>=<offset>,..."
	Phase     string `json:"phase"`
	WasPaused bool   `json:"was_paused,omitempty"` // paused before the replay: stay paused after
	// Epoch is the epoch the replay started from while it is pausing or
	// resetting (a replay to the start has raised the epoch when the
	// projection's epoch is above it), and the epoch it raised from the
	// rebuild on.
	Epoch uint64 `json:"epoch,omitempty"`
	// Start holds, for a replay to the start, the offset each partition
	// starts from, by partition: listed before anything changes,
	// recorded as the new epoch's progress and the offsets the group is
	// reset to (the same ones when the replay is resumed).
	Start map[int32]int64 `json:"start,omitempty"`
	// KeepModel: the replay moves the offsets back to a time or given
	// offsets and keeps the epoch, the read model and its cursors; the
	// replicas re-read from there and skip what each stream applied. (A
	// replay to the start drops the model and rebuilds it; one to a time
	// cannot, as streams that started earlier would be incomplete.)
	KeepModel bool      `json:"keep_model,omitempty"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Error     string    `json:"error,omitempty"`
}

// Replay phases, in order.
const (
	// ReplayPausing: asked the replicas to leave (a replay to the start
	// raises the epoch and requests the reset in the same step, so that
	// nothing is written from then on); waiting for the group to empty.
	ReplayPausing   = "pausing"
	ReplayResetting = "resetting" // the group is empty; offsets being reset
	ReplayRebuild   = "rebuild"   // offsets reset and epoch raised; replicas reset the model and rebuild
	ReplayDone      = "done"      // the rebuild was started (and, with --wait, caught up)
	ReplayFailed    = "failed"    // stopped before resetting anything; see Error
	ReplayAborted   = "aborted"   // an admin gave up on it
)

// ErrResetClaimLost reports a step of a replay's reset of the read model
// (a delete, marking the reset done) refused because the replica that
// makes it no longer holds the claim on that epoch's reset, or the reset
// was done already: it was frozen past its claim and another replica took
// the reset over. Nothing was deleted or marked.
var ErrResetClaimLost = errors.New("framework: the claim on the read model's reset is no longer held")

// ResetClaim is a replica's claim on the reset of a projection's read
// model for a replay's epoch: only its holder may drop the model, and
// only until the reset of that epoch is done.
type ResetClaim struct {
	Projection string
	Epoch      uint64
	Holder     string // the replica
}

type resetClaimKey struct{}

// WithResetClaim returns a context that carries c. The runner calls the
// projection's [framework.Resetter] with it; a store that supports it (package
// redischeckpoint) checks the claim in every delete made with that context
// and refuses it with an error matching [ErrResetClaimLost] once the claim
// is lost, so that a replica frozen in its reset cannot delete a read model
// rebuilt meanwhile. A Resetter of another store can check the claim the
// same way.
func WithResetClaim(ctx context.Context, c ResetClaim) context.Context {
	return context.WithValue(ctx, resetClaimKey{}, c)
}

// ResetClaimFrom returns the reset claim ctx carries, if any.
func ResetClaimFrom(ctx context.Context) (ResetClaim, bool) {
	c, ok := ctx.Value(resetClaimKey{}).(ResetClaim)
	return c, ok
}

// ReplicaInfo is what a replica reports about itself, for status.
type ReplicaInfo struct {
	ID         string  `json:"id"`
	Host       string  `json:"host"`
	Group      string  `json:"group"`
	Partitions []int32 `json:"partitions"`
	State      string  `json:"state"` // "running", "paused", "resetting", "waiting-reset", "stopped"
	// Problems lists the assigned partitions that are not working
	// normally (any state but "running"), with the error.
	Problems []PartitionStatus `json:"problems,omitempty"`
	Applied  int64             `json:"applied"`
	Skipped  int64             `json:"skipped"`
	Parked   int64             `json:"parked"`
	// Held counts events held behind parked streams.
	Held int64 `json:"held,omitempty"`
	// LagSeconds is the age of the last processed record of the
	// replica's partition furthest behind, while one is behind; 0 when
	// caught up (kafkarunner.Runner.Lag).
	LagSeconds float64 `json:"lag_seconds,omitempty"`
	// Unverified counts duplicates skipped without their event ID being
	// verified against the applied event (see the runner's docs).
	Unverified int64  `json:"unverified,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Warnings are standing problems of the replica's setup, such as a
	// Redis without persistence.
	Warnings   []string  `json:"warnings,omitempty"`
	Resettable bool      `json:"resettable"`
	SeenAt     time.Time `json:"seen_at"`
}

// PartitionStatus is the state of one partition a replica was assigned:
// "starting", "running", "retrying", "fenced", "state-lost" or "failed",
// since when, and the error that put it there.
type PartitionStatus struct {
	Partition int32     `json:"partition"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Since     time.Time `json:"since"`
}

// ReplayBegun is what [Admin.BeginReplay] did.
type ReplayBegun struct {
	// Epoch is the projection's epoch now: the one the replay rebuilds.
	Epoch uint64
	// Raised reports that this call raised the epoch; false when an
	// earlier call for the same replay (one interrupted and resumed) had.
	Raised bool
	// Cleared are the parked streams the raise cleared; each went to the
	// audit of resolutions as resolved by the replay.
	Cleared []ParkedStream
}
