package controlplane

import (
	"context"
	"time"

	"github.com/projector-dev/projector/framework"
)

// CheckpointStore keeps the runner's cursors. Cursors looks up many streams
// in one round trip. redischeckpoint.Store implements it.
type CheckpointStore interface {
	framework.ProjectionCheckpointStore
	Cursors(ctx context.Context, name string, streamIDs []string) (map[string]uint64, error)
}

// Fencer hands out fencing tokens per (projection, partition); writes made
// with a context carrying the fence ([WithFence]) fail once a
// newer token exists, with an error that matches [ErrFenced].
// redischeckpoint.Store implements it.
type Fencer interface {
	AcquireFence(ctx context.Context, projection string, partition int32) (Fence, error)
}

// ProgressStore is a CheckpointStore that records, per partition, how far
// its stored state covers the partition, so that the runner can tell
// lost state from a normal restart. redischeckpoint.Store implements it.
// The runner calls it from the partition's worker goroutine, with the
// partition's fence in ctx.
type ProgressStore interface {
	// Progress returns how far the stored state covers partition in the
	// current epoch. With nothing recorded for a partition whose offsets
	// are committed the runner stops it as state-lost, unless the store
	// says the partition's state was written without progress tracking
	// (Untracked: an older version); then it adopts the committed offset.
	Progress(ctx context.Context, projection string, partition int32) (PartitionProgress, error)
	// AdvancePartition raises the cursors of heads (never lowering one),
	// records the heads, and raises the partition's progress to next, in
	// one atomic step. The runner commits offset next only after it
	// returned nil.
	AdvancePartition(ctx context.Context, projection string, partition int32, heads []StreamHead, next int64) error
	// CheckState reports, without writing, whether the fence in ctx is
	// still current ([ErrFenced] if not) and the store still
	// holds every write made with it ([ErrStateLost] if not).
	CheckState(ctx context.Context, projection string) error
}

// HeadStore is implemented by checkpoint stores that also keep the event
// applied at each cursor, with its position (redischeckpoint.Store): the
// runner then recognises an event that repeats an applied sequence with
// another event ID (a conflict) however far back, also after a restart.
type HeadStore interface {
	Heads(ctx context.Context, name string, streamIDs []string) (map[string]StreamHead, error)
}

// CursorKeeper is implemented by projections that write the cursor and
// head of every event they apply themselves, atomically with the event's
// effect, into the runner's checkpoint store
// (redischeckpoint.AtomicProjection). The runner then writes them no
// second time: its flush records only the partition's progress, and the
// cursors it moves without an apply (an admin's skip).
type CursorKeeper interface {
	KeepsCursors() bool
}

// ServerChecker is implemented by stores that can tell whether the server
// behind them keeps the guarantees the runner needs (redischeckpoint.Store:
// Redis's maxmemory-policy must be noeviction). The runner calls it once
// at start: an error refuses to start, warnings are logged and reported.
type ServerChecker interface {
	CheckServer(ctx context.Context) (warnings []string, err error)
}

// ParkStore keeps parked streams where every replica and the admin command
// see them. redischeckpoint.Store implements it; without one the runner
// keeps them in memory (lost on restart: only for tests and demos).
//
// A parked stream is resolved in two steps: the admin records a retry or a
// skip (RequestResolution); the worker owning the stream's partition
// carries it out, re-reading the held records from Kafka, and only then
// unparks the stream (Unpark). Both identify the parked record by its
// Sequence and ParkedAt, so that neither acts on a newer park.
type ParkStore interface {
	// Park records p, replacing an earlier record of the stream and any
	// resolution requested for it. A p.Resolving given is a resolution
	// carried out in part before the stream parked again at p: it goes to
	// the audit of resolutions in the same atomic step. Fenced when ctx
	// carries a fence.
	Park(ctx context.Context, projection string, p ParkedStream) error
	// UpdateParked replaces the record of a stream that is still parked at
	// the same event (same Sequence and ParkedAt) and reports whether it
	// did: an admin may have resolved the stream meanwhile, and an update
	// must not park it again. A requested resolution is kept.
	UpdateParked(ctx context.Context, projection string, p ParkedStream) (bool, error)
	// Parked lists the parked streams, each with the resolution requested
	// for it, if any (ParkedStream.Resolving).
	Parked(ctx context.Context, projection string) ([]ParkedStream, error)
	// RequestResolution records r for the stream while it is still parked
	// at r.Parked (same Sequence and ParkedAt) and no other request is
	// pending, and reports whether it did.
	RequestResolution(ctx context.Context, projection string, r Resolution) (bool, error)
	// Unpark removes the stream parked at r.Parked (same Sequence and
	// ParkedAt) with its request, and appends r to the audit of
	// resolutions, in one atomic step; it reports whether the stream was
	// parked there. When r.At is set and the pending request is another
	// one (a different At), it leaves the stream parked. Fenced when ctx
	// carries a fence.
	Unpark(ctx context.Context, projection string, r Resolution) (bool, error)
}

// ControlStore is the shared control plane of a projection's replicas:
// pause and resume, resets of the read model for replays, and the replicas'
// reports for status. redischeckpoint.Store implements it.
type ControlStore interface {
	Control(ctx context.Context, projection string) (Control, error)
	// ClaimReset makes replica the one to reset the read model for epoch,
	// for ttl, unless another replica holds the claim. The claimant renews
	// it while it resets and releases it if the reset fails.
	ClaimReset(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error)
	RenewResetClaim(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error)
	ReleaseResetClaim(ctx context.Context, projection string, epoch uint64, replica string) error
	CompleteReset(ctx context.Context, projection string, epoch uint64) error
	Heartbeat(ctx context.Context, projection string, info ReplicaInfo) error
	RemoveReplica(ctx context.Context, projection, id string) error
}

// Pinger is implemented by stores that can tell whether they are
// reachable; readiness uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Admin is what admin tools need of a control-plane backend: the
// operations library (package ops) and projectorctl work on any Admin.
// redischeckpoint.Store implements it.
type Admin interface {
	ParkStore
	Pinger
	// Control returns the projection's control state (the zero Control
	// when nothing was ever asked).
	Control(ctx context.Context, projection string) (Control, error)
	// SetPaused pauses or resumes the projection's replicas; by and
	// reason are recorded.
	SetPaused(ctx context.Context, projection string, paused bool, by, reason string) error
	// SetReplay records a replay's current phase (nil clears it).
	SetReplay(ctx context.Context, projection string, r *Replay) error
	// Epoch returns the projection's current epoch (0 before the first
	// replay).
	Epoch(ctx context.Context, projection string) (uint64, error)
	// BeginReplay is the first step of a replay to the start, in one
	// atomic step: it pauses the replicas, raises the epoch from from
	// (only while it is still from) with the read model's reset pending,
	// and clears the cursors and parked streams of the old epoch.
	BeginReplay(ctx context.Context, projection string, from uint64, by, reason string, start map[int32]int64) (ReplayBegun, error)
	// BumpEpochAt raises the epoch for a replay that reset the consumer
	// group's offsets to start.
	BumpEpochAt(ctx context.Context, projection string, start map[int32]int64) (uint64, error)
	// RequestReset asks the replicas to drop the read model of epoch
	// before consuming in it.
	RequestReset(ctx context.Context, projection string, epoch uint64) error
	// Replicas returns what the replicas reported, newest first, without
	// reports older than staleAfter.
	Replicas(ctx context.Context, projection string, staleAfter time.Duration) ([]ReplicaInfo, error)
	// Progress returns how far the stored state covers partition in the
	// current epoch.
	Progress(ctx context.Context, projection string, partition int32) (PartitionProgress, error)
	// Resolutions returns the audit of resolutions of parked streams,
	// newest first, at most limit.
	Resolutions(ctx context.Context, projection string, limit int) ([]Resolution, error)

	// Versions returns the projection's registry of read-model versions.
	Versions(ctx context.Context, projection string) (Versions, error)
	// StartRebuild creates the next version beside the live one.
	StartRebuild(ctx context.Context, projection string, r Rebuild) (Rebuild, error)
	// SwitchLive makes the rebuilt version live.
	SwitchLive(ctx context.Context, projection string, version uint64, by string) (Versions, error)
	// AbortRebuild gives up the rebuild in progress.
	AbortRebuild(ctx context.Context, projection, by string) (Rebuild, error)
	// RetireNow makes a retiring version due for deletion at once.
	RetireNow(ctx context.Context, projection string, version uint64) error
}
