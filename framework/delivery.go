package framework

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// The delivery rules every runner follows: [ProjectionRunner] here and the
// Kafka runner in package kafkastore apply events through these functions,
// so the contract has one implementation.

// Order is where an event stands against its stream's cursor.
type Order uint8

const (
	// InOrder: the event's sequence is the cursor plus one; apply it.
	InOrder Order = iota
	// Duplicate: the sequence is at or below the cursor; the event was
	// applied before and is skipped. (A runner that knows the event IDs
	// applied at the cursor may find it is a conflict instead: another
	// event repeating an applied sequence.)
	Duplicate
	// Gap: the sequence is beyond the cursor plus one; events between are
	// missing, and the stream stops at this event ([GapError]).
	Gap
)

// String names the order for logs.
func (o Order) String() string {
	switch o {
	case InOrder:
		return "in-order"
	case Duplicate:
		return "duplicate"
	case Gap:
		return "gap"
	}
	return fmt.Sprintf("Order(%d)", uint8(o))
}

// Classify returns where event e stands against cursor, the last sequence
// applied of its stream (0 before the first).
func Classify(cursor uint64, e Event) Order {
	switch {
	case e.Sequence <= cursor:
		return Duplicate
	case e.Sequence > cursor+1:
		return Gap
	}
	return InOrder
}

// NewGapError is the error of event e classified as a [Gap] against cursor.
func NewGapError(cursor uint64, e Event) *GapError {
	return &GapError{StreamID: e.StreamID, Cursor: cursor, Got: e.Sequence, EventID: e.EventID}
}

// ApplyOptions tune [ApplyEvents].
type ApplyOptions struct {
	// EventContext, when set, gives the context event i is applied with
	// when events are applied one by one (a runner passes each event's
	// trace span this way). Default: the context given.
	EventContext func(ctx context.Context, i int) context.Context
	// StopOnCancel checks the context before each event applied one by
	// one, and returns its error once it is done.
	StopOnCancel bool
}

// ApplyEvents applies events, in order, to p: in one call of ApplyBatch when
// p is a [BatchApplier] and there is more than one event, else one by one.
// It returns how many events from the first were applied and, when not all
// were, the error of the event at that index (the caller names it, for
// example in an [ApplyError]):
//
//   - a panic in Apply is recovered into a [*PanicError] with its stack;
//   - a panic in ApplyBatch names no event: the batch counts as not
//     applied, and the events are applied one by one to find it;
//   - ApplyBatch's count is clamped to [0, len(events)], and a count short
//     of len(events) without an error is an error (the batch rule: a batch
//     applier says what it applied).
//
// Cursors are the caller's: it advances them past the first n events.
func ApplyEvents(ctx context.Context, p Projection, events []Event, opts ApplyOptions) (n int, err error) {
	if b, ok := p.(BatchApplier); ok && len(events) > 1 {
		if opts.StopOnCancel {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		n, err, panicked := applyBatchRecovering(ctx, b, events)
		if !panicked {
			n = min(max(n, 0), len(events))
			if err == nil && n < len(events) {
				err = fmt.Errorf("ApplyBatch applied %d of %d events and returned no error", n, len(events))
			}
			return n, err
		}
	}
	for i, e := range events {
		if opts.StopOnCancel {
			if err := ctx.Err(); err != nil {
				return i, err
			}
		}
		ectx := ctx
		if opts.EventContext != nil {
			ectx = opts.EventContext(ctx, i)
		}
		if err := ApplyRecovering(ectx, p, e); err != nil {
			return i, err
		}
	}
	return len(events), nil
}

// ApplyRecovering applies one event, recovering a panic into a
// [*PanicError] with its stack.
func ApplyRecovering(ctx context.Context, p Projection, e Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return p.Apply(ctx, e)
}

func applyBatchRecovering(ctx context.Context, b BatchApplier, events []Event) (n int, err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			n, err, panicked = 0, &PanicError{Value: v, Stack: debug.Stack()}, true
		}
	}()
	n, err = b.ApplyBatch(ctx, events)
	return n, err, false
}

// Permanent reports whether err says that applying the event again cannot
// succeed: it matches [ErrPermanent] (a payload that does not decode, a
// [*DecodeError], does). Runners that retry failed applies park such an
// event's stream at once instead.
func Permanent(err error) bool { return errors.Is(err, ErrPermanent) }

// RecentWindow is how many applied events per stream [RecentEvents] keeps.
const RecentWindow = 8

// RecentEvents remembers the last events a runner applied of each stream
// (their sequences and event IDs, the last [RecentWindow] of a stream), so
// that a [Duplicate] can be told apart: the same event delivered again is
// skipped; another event repeating an applied sequence is a conflict
// ([SequenceConflictError]) and stops its stream. Both runners use it. The
// zero value is ready to use; it is not safe for concurrent use.
type RecentEvents struct {
	streams map[string]*recentRing
}

type recentRing struct {
	seq  [RecentWindow]uint64
	id   [RecentWindow]string
	next int
}

// Remember records that eventID was applied at seq of streamID.
func (r *RecentEvents) Remember(streamID string, seq uint64, eventID string) {
	ring := r.streams[streamID]
	if ring == nil {
		if r.streams == nil {
			r.streams = make(map[string]*recentRing)
		}
		ring = &recentRing{}
		r.streams[streamID] = ring
	}
	ring.seq[ring.next], ring.id[ring.next] = seq, eventID
	ring.next = (ring.next + 1) % RecentWindow
}

// EventAt returns the ID of the event applied at seq of streamID, if it is
// among the stream's remembered events.
func (r *RecentEvents) EventAt(streamID string, seq uint64) (string, bool) {
	ring := r.streams[streamID]
	if ring == nil {
		return "", false
	}
	for i, s := range ring.seq {
		if s == seq && ring.id[i] != "" {
			return ring.id[i], true
		}
	}
	return "", false
}

// CheckDuplicate classifies a [Duplicate] e against what r remembers: nil
// for a redelivery of the event applied at its sequence (or one r does not
// remember), a [*SequenceConflictError] when another event was applied
// there.
func (r *RecentEvents) CheckDuplicate(e Event) error {
	if id, ok := r.EventAt(e.StreamID, e.Sequence); ok && id != e.EventID {
		return &SequenceConflictError{StreamID: e.StreamID, Sequence: e.Sequence, Applied: id, EventID: e.EventID}
	}
	return nil
}
