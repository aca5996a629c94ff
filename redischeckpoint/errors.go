package redischeckpoint

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

var (
	// ErrFenced reports a write whose fencing token or epoch is no longer
	// current: another worker owns the partition now, or a replay started
	// a new epoch. See [FencedError].
	ErrFenced = errors.New("redischeckpoint: fenced")

	// ErrResetPending reports a fenced write refused while a replay's
	// reset of the read model is pending; it matches
	// [controlplane.ErrResetPending]. See [ResetPendingError].
	ErrResetPending = controlplane.ErrResetPending

	// ErrVersionClosed reports a fenced write, or a fence asked, for a
	// version of the read model that a rebuild replaced or abandoned; it
	// is [controlplane.ErrVersionClosed].
	ErrVersionClosed = controlplane.ErrVersionClosed

	// ErrCorruptCursor reports a cursor in Redis that is not a
	// non-negative decimal integer. See [CorruptCursorError].
	ErrCorruptCursor = errors.New("redischeckpoint: corrupt cursor")

	// ErrStateLost reports a fenced write refused because Redis lost
	// state: see [StateLostError].
	ErrStateLost = errors.New("redischeckpoint: stored state lost")

	// ErrInvalidWrite reports an event whose read-model writes
	// AtomicProjection refuses before sending anything, whatever Redis
	// holds: a key outside the projection's read-model namespace, a write
	// above the size limits ([MaxWriteValues], [MaxEventValues]), one key
	// used as two types in one event. The events before it are applied.
	// See [WriteError].
	ErrInvalidWrite = errors.New("redischeckpoint: invalid read-model write")

	// ErrWriteRefused reports an event whose read-model writes the apply
	// script refused, after checking them against what Redis holds and
	// before running any of them: a key of another type, a stored value
	// that is not an integer, a sum that would leave int64, a command the
	// ACL user may not run. The events of the batch before it are applied
	// with their cursors; nothing of it is. Applying it again after fixing
	// the cause is safe. See [WriteError].
	ErrWriteRefused = errors.New("redischeckpoint: read-model write refused")

	// ErrPartialWrite reports an event of which Redis ran some writes but
	// refused a later one, which the script's checks did not foresee (a
	// bug of those checks). The read model holds part of the event and its
	// cursor does not cover it: the event must not be applied again before
	// the read model is repaired or rebuilt (a replay). The events of the
	// batch before it are applied with their cursors. The AtomicProjection
	// refuses the stream from that event on until the process restarts.
	// See [WriteError].
	ErrPartialWrite = errors.New("redischeckpoint: read-model write partially applied")
)

// WriteError names an event and the write of it that is invalid, was
// refused or failed half way. Kind says which: [ErrInvalidWrite],
// [ErrWriteRefused] or [ErrPartialWrite]; errors.Is matches it.
type WriteError struct {
	Kind       error
	Projection string
	StreamID   string
	Sequence   uint64
	EventID    string
	// Index is the write's position among the event's recorded writes,
	// from 1 (writes of no fields or members are not recorded); 0 is the
	// script's own writes of cursors and heads.
	Index int
	// Op is the write as the script names it: HSET, HDEL, HINCRBY, SET,
	// INCRBY, DEL, SADD, SREM, REPLACE or REPLACE_FIELDS.
	Op string
	// Key and Field are where the check failed: for Replace and
	// ReplaceFields possibly a sum or count hash. Field is "" where no
	// single field applies (a type check, a set's members).
	Key   string
	Field string
	// Code classifies Reason: WRONGTYPE (a key of another type), NOTINT (a
	// stored value that is not an integer), OVERFLOW (a result outside
	// int64), NOPERM (the ACL user may not run a command on the key),
	// LIMIT (a write above the size limits), INVALID (any other write
	// refused before sending), STOPPED (an earlier event of the stream was
	// partly applied), or the Redis error code of a failed command (OOM,
	// READONLY, ...: refused when it came before any write of the event).
	Code   string
	Reason string
}

func (e *WriteError) Error() string {
	var b strings.Builder
	b.WriteString("redischeckpoint: ")
	if e.Projection != "" {
		b.WriteString("projection " + e.Projection + ": ")
	}
	fmt.Fprintf(&b, "stream %s sequence %d event %q: ", e.StreamID, e.Sequence, e.EventID)
	switch {
	case e.Index > 0:
		fmt.Fprintf(&b, "write %d %s", e.Index, e.Op)
	case e.Op != "":
		b.WriteString("the script's own " + e.Op + " of cursors and heads")
	default:
		b.WriteString("writes")
	}
	if e.Key != "" {
		b.WriteString(" key " + e.Key)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " field %q", e.Field)
	}
	switch e.Kind {
	case ErrInvalidWrite:
		b.WriteString(": invalid")
	case ErrWriteRefused:
		b.WriteString(": refused, nothing of the event written")
	case ErrPartialWrite:
		b.WriteString(": PARTIALLY APPLIED, the read model holds part of the event")
	}
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *WriteError) Unwrap() error { return e.Kind }

// Is reports a partial write as [framework.ErrPartialApply] too, for
// runners that know only the core.
func (e *WriteError) Is(target error) bool {
	return e.Kind == ErrPartialWrite && target == framework.ErrPartialApply
}

// FencedError names the stale writer and the current owner.
type FencedError struct {
	Projection   string
	Partition    int32
	Held         controlplane.Fence // the fence the write carried
	CurrentEpoch uint64
	CurrentToken uint64 // newest token for the partition
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s partition %d: fenced: write carries epoch %d token %d, current is epoch %d token %d",
		e.Projection, e.Partition, e.Held.Epoch, e.Held.Token, e.CurrentEpoch, e.CurrentToken)
}

// Is reports whether target is [ErrFenced] or [controlplane.ErrFenced].
func (e *FencedError) Is(target error) bool {
	return target == ErrFenced || target == controlplane.ErrFenced
}

// CorruptCursorError names a cursor that does not parse.
type CorruptCursorError struct {
	Key   string
	Field string // the stream ID
	Value string
}

func (e *CorruptCursorError) Error() string {
	return fmt.Sprintf("redischeckpoint: key %s field %q: cursor %q is not a non-negative integer", e.Key, e.Field, e.Value)
}

// Is reports whether target is [ErrCorruptCursor].
func (e *CorruptCursorError) Is(target error) bool { return target == ErrCorruptCursor }

// isNil reports redis.Nil, the "no such key or field" reply, which this
// package translates at the boundary.
func isNil(err error) bool { return errors.Is(err, redis.Nil) }

// StateLostError reports a fenced write refused because Redis no longer
// holds state the writer made or relied on: the partition's fencing token,
// epoch or write serial went back in time. Redis restarted without
// persistence, failed over to a replica that had not received the latest
// writes, was flushed, or evicted keys. Nothing of the write was stored. The
// Kafka runner stops the partition and checks what its committed offsets
// rely on; see docs/runner.md.
type StateLostError struct {
	Projection string
	Partition  int32
	Detail     string
}

func (e *StateLostError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s partition %d: stored state lost: %s", e.Projection, e.Partition, e.Detail)
}

// Is reports whether target is [ErrStateLost] or [controlplane.ErrStateLost].
func (e *StateLostError) Is(target error) bool {
	return target == ErrStateLost || target == controlplane.ErrStateLost
}

// ResetPendingError reports a fenced write refused because a replay asked
// for the read model of Epoch to be dropped and no replica has done it
// yet. It matches [ErrResetPending] and [controlplane.ErrResetPending].
type ResetPendingError struct {
	Projection string
	Partition  int32
	Epoch      uint64
}

func (e *ResetPendingError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s partition %d: write refused: the reset of the read model for epoch %d is pending", e.Projection, e.Partition, e.Epoch)
}

// Is matches [ErrResetPending].
func (e *ResetPendingError) Is(target error) bool { return target == controlplane.ErrResetPending }

// VersionClosedError reports a write or fence refused for a read-model
// version that is no longer live or building. It matches
// [ErrVersionClosed].
type VersionClosedError struct {
	Projection string // the versioned name, "billing@v3"
	Partition  int32
}

func (e *VersionClosedError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s partition %d: this read-model version was replaced or abandoned by a rebuild: nothing more is written to it", e.Projection, e.Partition)
}

// Is matches [ErrVersionClosed].
func (e *VersionClosedError) Is(target error) bool { return target == controlplane.ErrVersionClosed }

// LayoutVersion is the version of the key layout (see the package
// documentation) this package writes and reads. Each projection records
// the version its keys were written with, in its meta hash ("layout"),
// when a replica first takes a fence; a Store refuses keys of a newer
// layout with a [*LayoutError]. See docs/compatibility.md.
const LayoutVersion = 1

// ErrNewerLayout reports keys written by a newer Projector, in a layout
// this version does not know. See [LayoutError].
var ErrNewerLayout = errors.New("redischeckpoint: keys of a newer layout")

// LayoutError names a projection whose keys are of a newer layout than
// [LayoutVersion]. Nothing was written.
type LayoutError struct {
	Projection string
	Found      int // the layout version the keys carry
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("redischeckpoint: the keys of projection %s have layout version %d, newer than this version of Projector knows (%d): upgrade Projector (or replay into a namespace of its own)",
		e.Projection, e.Found, LayoutVersion)
}

// Is reports whether target is [ErrNewerLayout].
func (e *LayoutError) Is(target error) bool { return target == ErrNewerLayout }
