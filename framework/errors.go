package framework

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every typed error below matches one of them with
// [errors.Is], so callers can test the kind of failure without the type.
var (
	// ErrInvalidStreamID reports a stream ID or stream-ID prefix that is
	// empty, too long, not UTF-8, or holds control characters or empty
	// segments. See [InvalidStreamIDError].
	ErrInvalidStreamID = errors.New("framework: invalid stream ID")

	// ErrInvalidTenantID reports a tenant ID that could reach outside its
	// own streams. See [InvalidTenantIDError].
	ErrInvalidTenantID = errors.New("framework: invalid tenant ID")

	// ErrInvalidProjectionName reports a projection name that cannot name
	// a consumer group and Redis keys. See [ValidateProjectionName].
	ErrInvalidProjectionName = errors.New("framework: invalid projection name")

	// ErrSequenceGap reports an event whose sequence is above its stream's
	// cursor plus one: events in between are missing. See [GapError].
	ErrSequenceGap = errors.New("framework: sequence gap")

	// ErrApplyFailed reports that a projection returned an error or
	// panicked while applying an event. See [ApplyError].
	ErrApplyFailed = errors.New("framework: apply failed")

	// ErrProjectionPanicked reports a panic inside a projection, recovered
	// by the runner. See [PanicError].
	ErrProjectionPanicked = errors.New("framework: projection panicked")

	// ErrVersionConflict reports an append whose expected version did not
	// match the stream's version. See [VersionConflictError].
	ErrVersionConflict = errors.New("framework: version conflict")

	// ErrNoSequenceTracker reports a catch-up over a projection that does
	// not implement [SequenceTracker].
	ErrNoSequenceTracker = errors.New("framework: projection does not track its last sequence")

	// ErrInvalidEvent reports an event that cannot be appended or applied
	// as given (for example a zero sequence or a mismatched stream ID).
	ErrInvalidEvent = errors.New("framework: invalid event")

	// ErrInvalidCheckpoint reports a checkpoint that cannot be decoded or
	// that holds an invalid stream ID.
	ErrInvalidCheckpoint = errors.New("framework: invalid checkpoint")

	// ErrDecode reports an event payload that does not decode into the
	// type its handler expects. See [DecodeError].
	ErrDecode = errors.New("framework: cannot decode event payload")

	// ErrSequenceConflict reports an event that repeats a sequence its
	// stream applied as another event: two writers forked the stream. See
	// [SequenceConflictError].
	ErrSequenceConflict = errors.New("framework: sequence conflict")

	// ErrPermanent marks an apply error that applying the event again
	// cannot cure: runners park the stream at once instead of retrying
	// with backoff (see [Permanent]). A [*DecodeError] matches it; a
	// projection marks its own with fmt.Errorf("…: %w", ErrPermanent).
	ErrPermanent = errors.New("framework: permanent failure")

	// ErrUnavailable reports that a store cannot serve a request now: it
	// is unreachable, still loading its data after a restart, read-only
	// after a failover demoted it, or busy. The event is not at fault:
	// runners retry it in place, with backoff, for as long as that lasts,
	// and never park a stream for it. Stores return errors that match it
	// with [errors.Is]; a projection that writes to a store of its own
	// returns one for such failures (for example by wrapping with
	// fmt.Errorf("…: %w", framework.ErrUnavailable)).
	ErrUnavailable = errors.New("framework: store unavailable")

	// ErrPartialApply reports a write that may have stored part of an
	// event's effect without its cursor: the read model may be
	// inconsistent and must be rebuilt. Stores return it only for failures
	// they could not rule out in advance; a runner stops the affected
	// partition instead of retrying over it.
	ErrPartialApply = errors.New("framework: event applied in part")
)

// InvalidStreamIDError names a rejected stream ID or prefix and why.
type InvalidStreamIDError struct {
	ID     string // the rejected value, quoted in Error
	Prefix bool   // whether it was given as a prefix
	Reason string
}

func (e *InvalidStreamIDError) Error() string {
	what := "stream ID"
	if e.Prefix {
		what = "stream-ID prefix"
	}
	return fmt.Sprintf("framework: invalid %s %q: %s", what, e.ID, e.Reason)
}

// Is reports whether target is [ErrInvalidStreamID].
func (e *InvalidStreamIDError) Is(target error) bool { return target == ErrInvalidStreamID }

// InvalidTenantIDError names a rejected tenant ID and why.
type InvalidTenantIDError struct {
	Tenant string
	Reason string
}

func (e *InvalidTenantIDError) Error() string {
	return fmt.Sprintf("framework: invalid tenant ID %q: %s", e.Tenant, e.Reason)
}

// Is reports whether target is [ErrInvalidTenantID].
func (e *InvalidTenantIDError) Is(target error) bool { return target == ErrInvalidTenantID }

// GapError reports that a stream's next event was expected at Cursor+1 but
// an event with sequence Got arrived. The stream is held: nothing after the
// cursor is applied until the missing events arrive.
type GapError struct {
	StreamID string
	Cursor   uint64 // last applied sequence
	Got      uint64 // sequence of the event that arrived
	EventID  string
}

func (e *GapError) Error() string {
	return fmt.Sprintf("framework: stream %s: sequence gap: expected %d, got %d (event %s)",
		e.StreamID, e.Cursor+1, e.Got, e.EventID)
}

// Is reports whether target is [ErrSequenceGap].
func (e *GapError) Is(target error) bool { return target == ErrSequenceGap }

// ApplyError wraps the error a projection returned (or the [PanicError] of
// its panic) with the event it failed on.
type ApplyError struct {
	Projection string
	StreamID   string
	Sequence   uint64
	EventID    string
	EventType  string
	Err        error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("framework: projection %s: stream %s sequence %d (event %s, type %s): %v",
		e.Projection, e.StreamID, e.Sequence, e.EventID, e.EventType, e.Err)
}

// Unwrap returns the projection's error.
func (e *ApplyError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrApplyFailed].
func (e *ApplyError) Is(target error) bool { return target == ErrApplyFailed }

// PanicError is a panic recovered from a projection. It is always wrapped in
// an [ApplyError] that names the event.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine's stack at the panic
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Is reports whether target is [ErrProjectionPanicked].
func (e *PanicError) Is(target error) bool { return target == ErrProjectionPanicked }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// VersionConflictError reports an append whose expectation did not hold.
type VersionConflictError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   uint64 // the stream's version when the append was tried
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("framework: stream %s: version conflict: expected %s, actual version %d",
		e.StreamID, e.Expected, e.Actual)
}

// Is reports whether target is [ErrVersionConflict].
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

// DecodeError reports an event payload that did not decode.
type DecodeError struct {
	StreamID  string
	Sequence  uint64
	EventType string
	Err       error // the decoder's error; a *json.UnmarshalTypeError names the field
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("framework: stream %s sequence %d: cannot decode %s payload: %v",
		e.StreamID, e.Sequence, e.EventType, e.Err)
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrDecode].
func (e *DecodeError) Is(target error) bool { return target == ErrDecode || target == ErrPermanent }

// SequenceConflictError reports an event (EventID) that repeats Sequence of
// StreamID, which was applied as another event (Applied). It matches
// [ErrSequenceConflict] and [ErrPermanent]: applying it again cannot help.
type SequenceConflictError struct {
	StreamID string
	Sequence uint64
	Applied  string
	EventID  string
}

func (e *SequenceConflictError) Error() string {
	return fmt.Sprintf("sequence %d of stream %s was applied as event %s; event %s repeats it", e.Sequence, e.StreamID, e.Applied, e.EventID)
}

// Is reports whether target is [ErrSequenceConflict] or [ErrPermanent].
func (e *SequenceConflictError) Is(target error) bool {
	return target == ErrSequenceConflict || target == ErrPermanent
}
