package framework

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"sync"
)

// The multi-stream entry points over a [MultiStreamReader]: the listed
// streams are read in one pass, their events interleaved, and fed to the
// same feeder as stream by stream. What differs is only when a stream's
// buffered events are applied: before an event of another stream, instead
// of at the end of the stream. The Result and the errors are those of
// feedStreams over ReadStream.

// onePass feeds interleaved events of many streams to one feeder,
// isolating the streams' failures as feedStream does.
type onePass struct {
	f      *feeder
	after  map[string]uint64 // the cursor each listed stream is read after
	failed map[string]error  // streams stopped, with the error they stopped at
}

func newOnePass(f *feeder, after map[string]uint64) *onePass {
	return &onePass{f: f, after: after, failed: map[string]error{}}
}

// flushOther applies the events buffered of a stream other than streamID,
// so that an error of that apply is its stream's, not streamID's.
func (o *onePass) flushOther(ctx context.Context, streamID string) error {
	if len(o.f.pending) == 0 || o.f.pending[0].StreamID == streamID {
		return nil
	}
	return o.flush(ctx)
}

// flush applies what is buffered and, on failure, stops its stream. It
// returns only an error that stops the run (ctx's).
func (o *onePass) flush(ctx context.Context) error {
	if len(o.f.pending) == 0 {
		return nil
	}
	id := o.f.pending[0].StreamID
	if err := o.f.flush(ctx); err != nil {
		if stopsRun(ctx, err) {
			return err
		}
		o.failed[id] = err
	}
	return nil
}

// event feeds e. It returns only an error that stops the run.
func (o *onePass) event(ctx context.Context, e Event) error {
	if _, stopped := o.failed[e.StreamID]; stopped {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.flushOther(ctx, e.StreamID); err != nil {
		return err
	}
	if err := o.f.feed(ctx, e); err != nil {
		o.f.drop()
		if stopsRun(ctx, err) {
			return err
		}
		o.failed[e.StreamID] = err
	}
	return nil
}

// readFailed stops streamID at an error of the store, after applying the
// events buffered before it, as feedStream does with a read error.
func (o *onePass) readFailed(ctx context.Context, streamID string, err error) error {
	if _, stopped := o.failed[streamID]; stopped {
		return nil
	}
	if err := o.flushOther(ctx, streamID); err != nil {
		return err
	}
	cause := o.f.stopBefore(ctx, fmt.Errorf("framework: read stream %s after %d: %w", streamID, o.after[streamID], err))
	o.f.drop()
	if stopsRun(ctx, cause) {
		return cause
	}
	o.failed[streamID] = cause
	return nil
}

// end applies what is left at the end of the pass.
func (o *onePass) end(ctx context.Context) error {
	if err := o.flush(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// passInput is one item of a [MultiStreamReader]'s iteration, checked.
type passInput struct {
	e        Event
	streamID string // of a stream's read error
	readErr  error
}

// listAll collects the listed streams, distinct, up to the listing's end or
// error.
func listAll(ids iter.Seq2[string, error]) (listed []string, listErr error) {
	for id, err := range distinct(ids) {
		if err != nil {
			return listed, fmt.Errorf("framework: list streams: %w", err)
		}
		listed = append(listed, id)
	}
	return listed, nil
}

// feedStreamsOnePass is feedStreams over a [MultiStreamReader].
func (r *ProjectionRunner) feedStreamsOnePass(ctx context.Context, p Projection, reader MultiStreamReader, ids iter.Seq2[string, error], start *GlobalProjectionCheckpoint) (Result, error) {
	listed, listErr := listAll(ids)
	if err := ctx.Err(); err != nil {
		// Ended while listing: nothing was read yet.
		if listErr != nil {
			err = listErr
		}
		return Result{Checkpoint: start}, err
	}
	invalid := map[string]error{}
	after := make(map[string]uint64, len(listed))
	cursors := make([]StreamCursor, 0, len(listed))
	for _, id := range listed {
		if err := ValidateStreamID(id); err != nil {
			invalid[id] = err
			continue
		}
		after[id] = start.Cursor(id)
		cursors = append(cursors, StreamCursor{StreamID: id, After: after[id]})
	}

	workers := max(1, min(r.cfg.Concurrency, len(cursors)))
	passes := make([]*onePass, workers)
	for i := range passes {
		cp := start
		if workers > 1 {
			cp = start.Clone() // merged below; cursors only move forward
		}
		passes[i] = newOnePass(newFeeder(p, r.cfg.BatchSize, cp), after)
	}

	var stopErr error // ends the run: ctx, or the store failing as a whole
	if workers == 1 {
		stopErr = r.passSequential(ctx, passes[0], reader, cursors, after)
	} else {
		stopErr = r.passConcurrent(ctx, passes, reader, cursors, after)
	}

	res := Result{Checkpoint: passes[0].f.cursors, Streams: len(listed)}
	if workers > 1 {
		res.Checkpoint = start
		for _, o := range passes {
			res.Checkpoint.Merge(o.f.cursors)
		}
	}
	failed := invalid
	for _, o := range passes {
		res.Applied += o.f.applied
		res.Skipped += o.f.skipped
		for id, err := range o.failed {
			failed[id] = err
		}
	}
	errs := make([]error, 0, len(failed)+2)
	for _, id := range listed {
		if err, ok := failed[id]; ok {
			errs = append(errs, &StreamError{StreamID: id, Err: err})
		}
	}
	if stopErr == nil {
		stopErr = listErr
	}
	return res, errors.Join(append(errs, stopErr)...)
}

// listed tells the streams of a pass; last caches the stream of the
// previous event, as a store yields a stream's events in runs.
type listed struct {
	after map[string]uint64
	last  string
}

// check turns an item of the reader's iteration into a passInput, or the
// error that ends the run.
func (l *listed) check(ctx context.Context, e Event, err error) (passInput, error) {
	if err == nil && e.StreamID == l.last && l.last != "" {
		return passInput{e: e}, nil
	}
	in, err := check(ctx, l.after, e, err)
	if err == nil && in.readErr == nil {
		l.last = e.StreamID
	}
	return in, err
}

func check(ctx context.Context, after map[string]uint64, e Event, err error) (passInput, error) {
	if err != nil {
		var se *StreamError
		if errors.As(err, &se) {
			if _, listed := after[se.StreamID]; listed {
				return passInput{streamID: se.StreamID, readErr: se.Err}, nil
			}
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return passInput{}, err
		}
		return passInput{}, fmt.Errorf("framework: read streams: %w", err)
	}
	if _, listed := after[e.StreamID]; !listed {
		return passInput{}, fmt.Errorf("%w: reading streams the store returned an event of stream %s (sequence %d), which was not asked for", ErrInvalidEvent, e.StreamID, e.Sequence)
	}
	return passInput{e: e}, nil
}

func (o *onePass) take(ctx context.Context, in passInput) error {
	if in.readErr != nil {
		return o.readFailed(ctx, in.streamID, in.readErr)
	}
	return o.event(ctx, in.e)
}

func (r *ProjectionRunner) passSequential(ctx context.Context, o *onePass, reader MultiStreamReader, cursors []StreamCursor, after map[string]uint64) error {
	if len(cursors) > 0 {
		l := &listed{after: after}
		for e, err := range reader.ReadStreams(ctx, cursors) {
			in, err := l.check(ctx, e, err)
			if err == nil {
				err = o.take(ctx, in)
			}
			if err != nil {
				if !stopsRun(ctx, err) {
					// The store failed as a whole: what was read is applied.
					if flushErr := o.flush(ctx); flushErr != nil {
						return errors.Join(err, flushErr)
					}
				}
				o.f.drop()
				return err
			}
		}
	}
	if err := o.end(ctx); err != nil {
		o.f.drop()
		return err
	}
	return nil
}

// passConcurrent spreads the streams over the passes by a hash of their
// ID, one goroutine each: a stream is fed by one goroutine, in order.
func (r *ProjectionRunner) passConcurrent(ctx context.Context, passes []*onePass, reader MultiStreamReader, cursors []StreamCursor, after map[string]uint64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	const chunk = 64 // items handed over at once
	queues := make([]chan []passInput, len(passes))
	var wg sync.WaitGroup
	for i, o := range passes {
		q := make(chan []passInput, 4)
		queues[i] = q
		wg.Go(func() {
			defer func() {
				for range q { // drain after a stop, so the reader never blocks
				}
			}()
			for items := range q {
				for _, in := range items {
					if err := o.take(ctx, in); err != nil {
						o.f.drop()
						cancel(err)
						return
					}
				}
			}
			if err := o.end(ctx); err != nil {
				o.f.drop()
				cancel(err)
			}
		})
	}
	seed := maphash.MakeSeed()
	held := make([][]passInput, len(passes))
	send := func(i int) {
		if len(held[i]) > 0 {
			queues[i] <- held[i]
			held[i] = make([]passInput, 0, chunk)
		}
	}
	var readErr error
	l := &listed{after: after}
	for e, err := range reader.ReadStreams(ctx, cursors) {
		in, err := l.check(ctx, e, err)
		if err != nil {
			readErr = err
			break
		}
		id := in.streamID
		if in.readErr == nil {
			id = in.e.StreamID
		}
		i := int(maphash.String(seed, id) % uint64(len(passes)))
		held[i] = append(held[i], in)
		if len(held[i]) >= chunk {
			send(i)
		}
		if ctx.Err() != nil {
			break
		}
	}
	for i := range queues {
		send(i)
		close(queues[i])
	}
	wg.Wait()
	if readErr != nil && !stopsRun(ctx, readErr) {
		return readErr
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return readErr
}
