package redischeckpoint

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
)

var (
	// ErrFenced reports a write whose fencing token or epoch is no longer
	// current: another worker owns the partition now, or a replay started
	// a new epoch. See [FencedError].
	ErrFenced = errors.New("redischeckpoint: fenced")

	// ErrCorruptCursor reports a cursor in Redis that is not a
	// non-negative decimal integer. See [CorruptCursorError].
	ErrCorruptCursor = errors.New("redischeckpoint: corrupt cursor")

	// ErrStateLost reports a fenced write refused because Redis lost
	// state: see [StateLostError].
	ErrStateLost = errors.New("redischeckpoint: stored state lost")

	// ErrInvalidWrite reports a read-model write that AtomicProjection
	// refuses before sending it, such as a key outside the projection's
	// read-model namespace.
	ErrInvalidWrite = errors.New("redischeckpoint: invalid read-model write")
)

// FencedError names the stale writer and the current owner.
type FencedError struct {
	Projection   string
	Partition    int32
	Held         framework.Fence // the fence the write carried
	CurrentEpoch uint64
	CurrentToken uint64 // newest token for the partition
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s partition %d: fenced: write carries epoch %d token %d, current is epoch %d token %d",
		e.Projection, e.Partition, e.Held.Epoch, e.Held.Token, e.CurrentEpoch, e.CurrentToken)
}

// Is reports whether target is [ErrFenced] or [framework.ErrFenced].
func (e *FencedError) Is(target error) bool {
	return target == ErrFenced || target == framework.ErrFenced
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

// Is reports whether target is [ErrStateLost] or [framework.ErrStateLost].
func (e *StateLostError) Is(target error) bool {
	return target == ErrStateLost || target == framework.ErrStateLost
}
