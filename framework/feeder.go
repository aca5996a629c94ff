package framework

import (
	"context"
	"errors"
	"fmt"
)

// feeder applies events to one projection, enforcing the delivery contract
// per stream: duplicates are skipped and counted, gaps stop the stream, and
// cursors record exactly what was applied. It buffers at most one batch of
// one stream, so memory is bounded by the batch size.
type feeder struct {
	p         Projection
	batchSize int

	// cursors holds the last applied sequence per stream.
	cursors *GlobalProjectionCheckpoint
	// seed, when set, is asked for a stream's starting cursor the first
	// time the stream is seen (catch-up from a SequenceTracker).
	seed   func(ctx context.Context, streamID string) (uint64, error)
	seeded map[string]bool

	pending []Event // contiguous events of one stream, not yet applied
	// recent remembers the last applied events of each stream, to tell a
	// redelivery from a conflict.
	recent  RecentEvents
	applied int64
	skipped int64
}

func newFeeder(p Projection, batchSize int, cursors *GlobalProjectionCheckpoint) *feeder {
	if batchSize < 1 {
		batchSize = 1
	}
	return &feeder{p: p, batchSize: batchSize, cursors: cursors}
}

// cursor returns the sequence the next event of streamID must follow,
// counting events buffered but not yet applied.
func (f *feeder) cursor(ctx context.Context, streamID string) (uint64, error) {
	if n := len(f.pending); n > 0 && f.pending[0].StreamID == streamID {
		return f.pending[n-1].Sequence, nil
	}
	if f.seed != nil && !f.seeded[streamID] {
		seq, err := f.seed(ctx, streamID)
		if err != nil {
			return 0, fmt.Errorf("framework: projection %s: last sequence of stream %s: %w", f.p.Name(), streamID, err)
		}
		if f.seeded == nil {
			f.seeded = make(map[string]bool)
		}
		f.seeded[streamID] = true
		f.cursors.Advance(streamID, seq)
	}
	return f.cursors.Cursor(streamID), nil
}

// feed offers one event. It applies buffered events when the batch is full
// or the stream changes.
func (f *feeder) feed(ctx context.Context, e Event) error {
	if e.Sequence == 0 {
		return fmt.Errorf("%w: stream %s: event %s has sequence 0 (sequences start at 1)", ErrInvalidEvent, e.StreamID, e.EventID)
	}
	if len(f.pending) > 0 && f.pending[0].StreamID != e.StreamID {
		if err := f.flush(ctx); err != nil {
			return err
		}
	}
	cur, err := f.cursor(ctx, e.StreamID)
	if err != nil {
		return err
	}
	switch Classify(cur, e) {
	case Duplicate:
		if err := f.conflict(e); err != nil {
			return f.stopBefore(ctx, err)
		}
		f.skipped++
		return nil
	case Gap:
		if err := f.flush(ctx); err != nil {
			return err
		}
		return NewGapError(cur, e)
	}
	f.pending = append(f.pending, e)
	if len(f.pending) >= f.batchSize {
		return f.flush(ctx)
	}
	return nil
}

// flush applies the buffered events and advances the cursor past those that
// were applied.
func (f *feeder) flush(ctx context.Context) error {
	if len(f.pending) == 0 {
		return nil
	}
	defer f.drop() // applied or failed: either way nothing stays buffered
	n, err := ApplyEvents(ctx, f.p, f.pending, ApplyOptions{StopOnCancel: true})
	for _, e := range f.pending[:n] {
		f.recent.Remember(e.StreamID, e.Sequence, e.EventID)
	}
	if n > 0 {
		last := f.pending[n-1]
		f.cursors.Advance(last.StreamID, last.Sequence)
		f.applied += int64(n)
	}
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && err == ctxErr {
		return err // stopped between events
	}
	return f.applyError(f.pending[min(n, len(f.pending)-1)], err)
}

// conflict reports a duplicate e that repeats a sequence applied (or
// buffered to apply) as another event: a [*SequenceConflictError].
func (f *feeder) conflict(e Event) error {
	for _, p := range f.pending {
		if p.StreamID == e.StreamID && p.Sequence == e.Sequence && p.EventID != e.EventID {
			return &SequenceConflictError{StreamID: e.StreamID, Sequence: e.Sequence, Applied: p.EventID, EventID: e.EventID}
		}
	}
	return f.recent.CheckDuplicate(e)
}

// stopBefore ends the current stream at a record that cannot be fed (a read
// error, an event of another stream): the events buffered before it are
// applied, as before a gap, and cause is returned, joined with the error of
// that apply if it failed.
func (f *feeder) stopBefore(ctx context.Context, cause error) error {
	if ctx.Err() != nil {
		return cause
	}
	if err := f.flush(ctx); err != nil {
		return errors.Join(err, cause)
	}
	return cause
}

// drop forgets the buffered events, applied or not, and their payloads: a
// stream that stopped must not have its events applied with the next one.
func (f *feeder) drop() {
	clear(f.pending)
	f.pending = f.pending[:0]
}

func (f *feeder) applyError(e Event, err error) error {
	return &ApplyError{
		Projection: f.p.Name(),
		StreamID:   e.StreamID,
		Sequence:   e.Sequence,
		EventID:    e.EventID,
		EventType:  e.Type,
		Err:        err,
	}
}
