package framework

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// feeder applies events to one projection, enforcing the delivery contract
// per stream: duplicates are skipped and counted, gaps stop the stream, and
// cursors record exactly what was applied. It buffers at most one batch of
// one stream, so memory is bounded by the batch size.
type feeder struct {
	p         Projection
	batch     BatchApplier // nil when p applies one event at a time
	batchSize int

	// cursors holds the last applied sequence per stream.
	cursors *GlobalProjectionCheckpoint
	// seed, when set, is asked for a stream's starting cursor the first
	// time the stream is seen (catch-up from a SequenceTracker).
	seed   func(ctx context.Context, streamID string) (uint64, error)
	seeded map[string]bool

	pending []Event // contiguous events of one stream, not yet applied
	applied int64
	skipped int64
}

func newFeeder(p Projection, batchSize int, cursors *GlobalProjectionCheckpoint) *feeder {
	f := &feeder{p: p, batchSize: batchSize, cursors: cursors}
	if b, ok := p.(BatchApplier); ok && batchSize > 1 {
		f.batch = b
	}
	return f
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
	switch {
	case e.Sequence <= cur:
		f.skipped++
		return nil
	case e.Sequence > cur+1:
		if err := f.flush(ctx); err != nil {
			return err
		}
		return &GapError{StreamID: e.StreamID, Cursor: cur, Got: e.Sequence, EventID: e.EventID}
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
	if f.batch != nil && len(f.pending) > 1 {
		return f.flushBatch(ctx)
	}
	for _, e := range f.pending {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.applyOne(ctx, e); err != nil {
			return err
		}
		f.cursors.Advance(e.StreamID, e.Sequence)
		f.applied++
	}
	return nil
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

func (f *feeder) flushBatch(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := f.applyBatch(ctx, f.pending)
	n = min(max(n, 0), len(f.pending))
	if n > 0 {
		last := f.pending[n-1]
		f.cursors.Advance(last.StreamID, last.Sequence)
		f.applied += int64(n)
	}
	if err == nil {
		if n < len(f.pending) {
			e := f.pending[n]
			return f.applyError(e, fmt.Errorf("ApplyBatch applied %d of %d events and returned no error", n, len(f.pending)))
		}
		return nil
	}
	failed := f.pending[min(n, len(f.pending)-1)]
	return f.applyError(failed, err)
}

func (f *feeder) applyOne(ctx context.Context, e Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = f.applyError(e, &PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	if err := f.p.Apply(ctx, e); err != nil {
		return f.applyError(e, err)
	}
	return nil
}

func (f *feeder) applyBatch(ctx context.Context, events []Event) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return f.batch.ApplyBatch(ctx, events)
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
