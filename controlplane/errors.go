package controlplane

import "errors"

// Errors of the control plane. Stores return errors that match them with
// [errors.Is].
var (
	// ErrFenced reports a write whose fence (see [Fence]) is no longer
	// current: another worker owns the partition now, or a replay started
	// a new epoch. Nothing of the write was stored. Stores that support
	// fencing return errors that match it with [errors.Is].
	ErrFenced = errors.New("controlplane: fenced")

	// ErrStateLost reports that the store no longer holds state a writer
	// relied on: its fences, cursors or read model went back in time (a
	// Redis restart without persistence, a failover that lost writes, a
	// flush, an evicted key). Nothing of the write was stored; what was
	// lost must be rebuilt (a replay).
	ErrStateLost = errors.New("controlplane: stored state lost")

	// ErrResetPending reports a write refused because a replay raised the
	// epoch and the new epoch's read model has not been dropped yet:
	// nobody may write into it before the reset (the write would be wiped
	// by it). Nothing of the write was stored; the writer leaves the
	// consumer group and waits for the reset.
	ErrResetPending = errors.New("controlplane: a replay's reset of the read model is pending")

	// ErrVersionClosed reports a write refused because its read-model
	// version is no longer live or being built: a rebuild replaced it, or
	// its rebuild was aborted (see [Versions]). Nothing was stored.
	ErrVersionClosed = errors.New("controlplane: read-model version closed")
)
