package framework

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// RunnerConfig configures a [ProjectionRunner]. The zero value is usable:
// every zero field means its documented default.
type RunnerConfig struct {
	// BatchSize is the most events held in memory per stream and passed to
	// a [BatchApplier] at once. Default 256.
	BatchSize int

	// Concurrency is how many streams are applied at the same time by the
	// multi-stream entry points. Each stream is applied whole by one
	// goroutine, so order within a stream holds; there is no order across
	// streams. With more than one, the projection's Apply must be safe for
	// concurrent calls on different streams. Default 1.
	Concurrency int

	// SaveTimeout bounds the final checkpoint write of
	// [ProjectionRunner.CatchUpPersistent], which runs even after ctx is
	// cancelled so that applied work is recorded. Default 30s.
	SaveTimeout time.Duration

	// Logger receives one record per failed run (one for all the failed
	// streams of a multi-stream run). Default: discard.
	Logger *slog.Logger
}

// DefaultBatchSize is the default of [RunnerConfig.BatchSize].
const DefaultBatchSize = 256

func (c *RunnerConfig) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.SaveTimeout == 0 {
		c.SaveTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every invalid field, joined.
func (c RunnerConfig) Validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("framework: RunnerConfig.BatchSize %d is negative", c.BatchSize))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("framework: RunnerConfig.Concurrency %d is negative", c.Concurrency))
	}
	if c.SaveTimeout < 0 {
		errs = append(errs, fmt.Errorf("framework: RunnerConfig.SaveTimeout %v is negative", c.SaveTimeout))
	}
	return errors.Join(errs...)
}

// Result reports what a run did. On error it describes exactly the work
// done: Checkpoint covers the applied events and no others, so a catch-up
// from it resumes at each failed event.
type Result struct {
	// Checkpoint holds the cursor of every stream seen (and, for a
	// catch-up, every cursor it started from).
	Checkpoint *GlobalProjectionCheckpoint
	// Applied counts events applied to the projection.
	Applied int64
	// Skipped counts duplicates: events at or below their stream's cursor.
	Skipped int64
	// Streams counts streams read (multi-stream entry points) or seen.
	Streams int
}

// StreamError is the failure of one stream in a multi-stream run: the
// stream stopped at Err, and the run went on with the other streams. The
// error of such a run joins one StreamError per failed stream (find them
// with [errors.As] or by walking the join).
type StreamError struct {
	StreamID string
	Err      error // a [*GapError], an [*ApplyError], a read error of the store, ...
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("framework: stream %s stopped: %v", e.StreamID, e.Err)
}

// Unwrap returns the error that stopped the stream.
func (e *StreamError) Unwrap() error { return e.Err }

// ProjectionRunner drives projections in-process. It is safe for concurrent
// use; it holds no state between calls.
//
// Every entry point applies the delivery contract of the package (see the
// package documentation) and returns a [Result] whose checkpoint covers
// exactly the applied events, also together with an error. Errors are
// [*GapError], [*ApplyError] (wrapping the projection's error or a
// [*PanicError]), ctx's error, or errors of the store. Cancelling ctx stops
// the run between events.
//
// The multi-stream entry points (RunAllStreams, CatchUpAllStreams,
// RunPrefix, CatchUpPrefix, CatchUpPersistent) isolate streams: an error
// stops only the stream that had it, the run goes on with the others, and
// the returned error joins one [*StreamError] per failed stream. Only ctx,
// an error listing the streams and an error of a [MultiStreamReader] that
// is no stream's stop the whole run.
//
// Over a store that is a [MultiStreamReader] they read the listed streams
// in one pass, interleaved, instead of one ReadStream per stream; the
// Result and the errors are the same either way. A stream's buffered
// events are then applied before an event of another stream is fed, so a
// [BatchApplier] gets batches of consecutive events of one stream, as the
// store yields them.
type ProjectionRunner struct {
	cfg RunnerConfig
}

// NewProjectionRunner returns a runner, or the joined problems of cfg.
func NewProjectionRunner(cfg RunnerConfig) (*ProjectionRunner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &ProjectionRunner{cfg: cfg}, nil
}

// Run applies events, a slice that may mix streams, to p from an empty
// checkpoint: each stream must start at sequence 1.
func (r *ProjectionRunner) Run(ctx context.Context, p Projection, events []Event) (Result, error) {
	f := newFeeder(p, r.cfg.BatchSize, NewGlobalProjectionCheckpoint())
	return r.feedSlice(ctx, f, events)
}

// CatchUp applies the events of the slice that come after the last sequence
// p has applied to their stream, as told by p's [SequenceTracker]. Older
// events are skipped and counted. A projection without a tracker is
// [ErrNoSequenceTracker].
func (r *ProjectionRunner) CatchUp(ctx context.Context, p Projection, events []Event) (Result, error) {
	f, err := r.trackingFeeder(p)
	if err != nil {
		return Result{Checkpoint: NewGlobalProjectionCheckpoint()}, err
	}
	return r.feedSlice(ctx, f, events)
}

// RunMany applies events to several projections in one pass over the slice,
// each from an empty checkpoint. The projections are independent: an error
// stops only the projection that had it, and the results, keyed by
// projection name, say how far each got. The error joins every projection's
// error. Names must be distinct.
func (r *ProjectionRunner) RunMany(ctx context.Context, projections []Projection, events []Event) (map[string]Result, error) {
	feeders := make([]*feeder, len(projections))
	results := make(map[string]Result, len(projections))
	for i, p := range projections {
		if _, dup := results[p.Name()]; dup {
			return nil, fmt.Errorf("framework: RunMany: two projections are named %q", p.Name())
		}
		results[p.Name()] = Result{}
		feeders[i] = newFeeder(p, r.cfg.BatchSize, NewGlobalProjectionCheckpoint())
	}
	errs := make([]error, len(feeders))
	for _, e := range events {
		if err := ctx.Err(); err != nil {
			break
		}
		for i, f := range feeders {
			if errs[i] == nil {
				errs[i] = f.feed(ctx, e)
			}
		}
	}
	for i, f := range feeders {
		if errs[i] == nil {
			errs[i] = f.flush(ctx)
		}
		if errs[i] == nil {
			errs[i] = ctx.Err()
		}
		results[f.p.Name()] = f.result(streamsIn(events))
	}
	err := errors.Join(errs...)
	r.logFailure(ctx, "RunMany", err)
	return results, err
}

// RunFromStore applies every event of one stored stream to p, reading it in
// batches: memory is bounded by the batch size, not the stream's length.
func (r *ProjectionRunner) RunFromStore(ctx context.Context, p Projection, store EventStore, streamID string) (Result, error) {
	f := newFeeder(p, r.cfg.BatchSize, NewGlobalProjectionCheckpoint())
	err := r.feedStream(ctx, f, store, streamID)
	return f.result(1), r.logFailure(ctx, "RunFromStore", err)
}

// CatchUpFromStore applies the events of one stored stream after the last
// sequence p's [SequenceTracker] reports, reading only those from the store.
func (r *ProjectionRunner) CatchUpFromStore(ctx context.Context, p Projection, store EventStore, streamID string) (Result, error) {
	f, err := r.trackingFeeder(p)
	if err != nil {
		return Result{Checkpoint: NewGlobalProjectionCheckpoint()}, err
	}
	err = r.feedStream(ctx, f, store, streamID)
	return f.result(1), r.logFailure(ctx, "CatchUpFromStore", err)
}

// RunAllStreams applies every event of the given streams to p, stream by
// stream (or [RunnerConfig.Concurrency] streams at a time), and returns the
// checkpoint to catch up from later. A stream listed more than once is
// applied once. A stream that fails stops there, with its cursor after the
// last event applied, while the other streams are applied in full; the
// error joins a [*StreamError] for each failed stream.
func (r *ProjectionRunner) RunAllStreams(ctx context.Context, p Projection, store EventStore, streamIDs []string) (Result, error) {
	res, err := r.feedStreams(ctx, p, store, sliceSeq(streamIDs), NewGlobalProjectionCheckpoint())
	return res, r.logFailure(ctx, "RunAllStreams", err)
}

// CatchUpAllStreams applies to p only the events of the given streams that
// are newer than their cursor in from, and returns from advanced (from
// itself is not modified). Cursors of streams not listed are kept. Failed
// streams are isolated as in [ProjectionRunner.RunAllStreams].
func (r *ProjectionRunner) CatchUpAllStreams(ctx context.Context, p Projection, store EventStore, streamIDs []string, from *GlobalProjectionCheckpoint) (Result, error) {
	res, err := r.feedStreams(ctx, p, store, sliceSeq(streamIDs), from.Clone())
	return res, r.logFailure(ctx, "CatchUpAllStreams", err)
}

// RunPrefix is [ProjectionRunner.RunAllStreams] over every stream whose ID
// starts with prefix: "process/" for all tenants, [TenantPrefix] for one.
func (r *ProjectionRunner) RunPrefix(ctx context.Context, p Projection, store EventStore, prefix string) (Result, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Result{Checkpoint: NewGlobalProjectionCheckpoint()}, err
	}
	res, err := r.feedStreams(ctx, p, store, store.ListStreams(ctx, prefix), NewGlobalProjectionCheckpoint())
	return res, r.logFailure(ctx, "RunPrefix", err)
}

// CatchUpPrefix is [ProjectionRunner.CatchUpAllStreams] over every stream
// whose ID starts with prefix.
func (r *ProjectionRunner) CatchUpPrefix(ctx context.Context, p Projection, store EventStore, prefix string, from *GlobalProjectionCheckpoint) (Result, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Result{Checkpoint: from.Clone()}, err
	}
	res, err := r.feedStreams(ctx, p, store, store.ListStreams(ctx, prefix), from.Clone())
	return res, r.logFailure(ctx, "CatchUpPrefix", err)
}

// CatchUpPersistent loads the checkpoint named p.Name() from checkpoints,
// catches p up over every stream with prefix, and stores the cursors that
// moved. It stores them also when the catch-up fails part way (with a fresh
// deadline of [RunnerConfig.SaveTimeout] if ctx is done): those of the
// streams that succeeded and those of failed streams up to their failure,
// so that a retry resumes after the last applied event of each.
//
// The checkpoint is written after the read model. A crash between the two
// re-applies the events since the last save on the next run: use this with
// read models that tolerate that, or keep the cursor inside the read model
// (a [SequenceTracker], or package redischeckpoint's atomic apply).
func (r *ProjectionRunner) CatchUpPersistent(ctx context.Context, p Projection, store EventStore, checkpoints ProjectionCheckpointStore, prefix string) (Result, error) {
	loaded, err := checkpoints.Load(ctx, p.Name())
	if err != nil {
		return Result{Checkpoint: NewGlobalProjectionCheckpoint()}, fmt.Errorf("framework: load checkpoint %s: %w", p.Name(), err)
	}
	res, runErr := r.CatchUpPrefix(ctx, p, store, prefix, loaded)
	moved := res.Checkpoint.MovedSince(loaded)
	if len(moved) == 0 {
		return res, runErr
	}
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.SaveTimeout)
	defer cancel()
	if err := checkpoints.Advance(saveCtx, p.Name(), moved); err != nil {
		return res, errors.Join(runErr, fmt.Errorf("framework: save checkpoint %s (%d cursors): %w", p.Name(), len(moved), err))
	}
	return res, runErr
}

func (r *ProjectionRunner) trackingFeeder(p Projection) (*feeder, error) {
	tracker, ok := p.(SequenceTracker)
	if !ok {
		return nil, fmt.Errorf("%w: %s (%T)", ErrNoSequenceTracker, p.Name(), p)
	}
	f := newFeeder(p, r.cfg.BatchSize, NewGlobalProjectionCheckpoint())
	f.seed = tracker.LastSequence
	return f, nil
}

func (r *ProjectionRunner) feedSlice(ctx context.Context, f *feeder, events []Event) (Result, error) {
	var err error
	for _, e := range events {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = f.feed(ctx, e); err != nil {
			break
		}
	}
	if err == nil {
		err = f.flush(ctx)
	}
	return f.result(streamsIn(events)), r.logFailure(ctx, "Run", err)
}

// feedStream feeds one stored stream, starting after f's cursor for it. On
// error nothing of the stream is left buffered in f, so that f can go on
// with another stream without applying this one's events later.
func (r *ProjectionRunner) feedStream(ctx context.Context, f *feeder, store EventStore, streamID string) (err error) {
	defer func() {
		if err != nil {
			f.drop()
		}
	}()
	if err := ValidateStreamID(streamID); err != nil {
		return err
	}
	after, err := f.cursor(ctx, streamID)
	if err != nil {
		return err
	}
	for e, err := range store.ReadStream(ctx, streamID, after) {
		if err != nil {
			return f.stopBefore(ctx, fmt.Errorf("framework: read stream %s after %d: %w", streamID, after, err))
		}
		if e.StreamID != streamID {
			return f.stopBefore(ctx, fmt.Errorf("%w: reading stream %s the store returned an event of stream %s (sequence %d)", ErrInvalidEvent, streamID, e.StreamID, e.Sequence))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.feed(ctx, e); err != nil {
			return err
		}
	}
	if err := f.flush(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// feedStreams feeds every listed stream, [RunnerConfig.Concurrency] at a
// time, starting each after its cursor in start. A stream listed more than
// once is fed once: two concurrent feeders would each apply it from its
// start cursor.
//
// A stream's failure stops that stream only; the run goes on and returns
// one [*StreamError] per failed stream, joined in listing order. What stops
// the run is ctx (its error is returned as is, after the streams that
// failed before) and an error of the listing, which leaves no trustworthy
// list to go on with.
//
// Over a [MultiStreamReader] the listed streams are read in one pass
// (feedStreamsOnePass), with the same Result and errors.
func (r *ProjectionRunner) feedStreams(ctx context.Context, p Projection, store EventStore, ids iter.Seq2[string, error], start *GlobalProjectionCheckpoint) (Result, error) {
	if reader, ok := store.(MultiStreamReader); ok {
		return r.feedStreamsOnePass(ctx, p, reader, ids, start)
	}
	ids = distinct(ids)
	if r.cfg.Concurrency <= 1 {
		f := newFeeder(p, r.cfg.BatchSize, start)
		streams := 0
		var errs []error
		for id, err := range ids {
			if err != nil {
				errs = append(errs, fmt.Errorf("framework: list streams: %w", err))
				break
			}
			streams++
			if err := r.feedStream(ctx, f, store, id); err != nil {
				if stopsRun(ctx, err) {
					errs = append(errs, err)
					break
				}
				errs = append(errs, &StreamError{StreamID: id, Err: err})
			}
		}
		return f.result(streams), errors.Join(errs...)
	}
	return r.feedStreamsConcurrently(ctx, p, store, ids, start)
}

// stopsRun reports whether err, returned while feeding a stream, is ctx
// ending rather than a failure of the stream.
func stopsRun(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

func (r *ProjectionRunner) feedStreamsConcurrently(ctx context.Context, p Projection, store EventStore, ids iter.Seq2[string, error], start *GlobalProjectionCheckpoint) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	type listed struct {
		id    string
		index int // in the listing, to report failures in listing order
	}
	type failure struct {
		index int
		err   error
	}
	work := make(chan listed)
	feeders := make([]*feeder, r.cfg.Concurrency)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []failure
	)
	for i := range feeders {
		// Each worker advances its own copy of the start cursors; the
		// copies are merged at the end (cursors only move forward).
		f := newFeeder(p, r.cfg.BatchSize, start.Clone())
		feeders[i] = f
		wg.Go(func() {
			for s := range work {
				err := r.feedStream(ctx, f, store, s.id)
				if err == nil || stopsRun(ctx, err) {
					continue // ctx's end is reported once, below
				}
				mu.Lock()
				failures = append(failures, failure{s.index, &StreamError{StreamID: s.id, Err: err}})
				mu.Unlock()
			}
		})
	}
	streams := 0
	for id, err := range ids {
		if err != nil {
			cancel(fmt.Errorf("framework: list streams: %w", err))
			break
		}
		select {
		case work <- listed{id, streams}:
			streams++
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()

	res := Result{Checkpoint: start, Streams: streams}
	for _, f := range feeders {
		res.Checkpoint.Merge(f.cursors)
		res.Applied += f.applied
		res.Skipped += f.skipped
	}
	slices.SortFunc(failures, func(a, b failure) int { return cmp.Compare(a.index, b.index) })
	errs := make([]error, 0, len(failures)+1)
	for _, f := range failures {
		errs = append(errs, f.err)
	}
	return res, errors.Join(append(errs, context.Cause(ctx))...)
}

func (f *feeder) result(streams int) Result {
	return Result{Checkpoint: f.cursors, Applied: f.applied, Skipped: f.skipped, Streams: streams}
}

func (r *ProjectionRunner) logFailure(ctx context.Context, op string, err error) error {
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "projection run stopped", "op", op, "err", err)
	}
	return err
}

// distinct drops the repeats of IDs already yielded (errors pass through).
func distinct(ids iter.Seq2[string, error]) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		seen := map[string]struct{}{}
		for id, err := range ids {
			if err == nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			}
			if !yield(id, err) {
				return
			}
		}
	}
}

func sliceSeq(ids []string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, id := range ids {
			if !yield(id, nil) {
				return
			}
		}
	}
}

func streamsIn(events []Event) int {
	seen := make(map[string]struct{})
	for _, e := range events {
		seen[e.StreamID] = struct{}{}
	}
	return len(seen)
}
