package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/framework"
)

// maxBatchLinks bounds the span links of one batch span.
const maxBatchLinks = 128

// conflictWindow is how many recent event IDs per stream a worker keeps to
// recognise a repeated sequence with a different event ID.
const conflictWindow = 8

// fetched is one poll's records of a partition.
type fetched struct {
	records       []*kgo.Record
	highWatermark int64
}

// worker applies one partition's records. Only its own goroutine touches
// its fields, except the channels and the stop flags.
type worker struct {
	r         *Runner
	partition int32
	fence     *framework.Fence

	ctx    context.Context // carries the fence; cancelled by abort
	cancel context.CancelFunc

	batches chan fetched
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
	commit  bool // set before quit is closed

	cursors map[string]uint64  // last applied sequence per stream
	recent  map[string]*recent // recent (sequence, event ID) per stream
	parked  map[string]bool    // streams held by this partition
	applied int64              // applied since the last metrics update

	// For Lag, read from other goroutines.
	highWatermark atomic.Int64 // end of the partition at the last fetch
	position      atomic.Int64 // next offset to process
	lastTimestamp atomic.Int64 // of the last processed record, Unix ns

	dirty      map[string]uint64 // cursors applied but not yet stored
	last       *kgo.Record       // last record processed, to commit
	committed  int64             // next offset committed
	lastFlush  time.Time
	lastParked time.Time
}

type streamSeq struct {
	stream string
	seq    uint64
}

// recent is a ring of a stream's last applied sequences and event IDs.
type recent struct {
	seq  [conflictWindow]uint64
	id   [conflictWindow]string
	next int
}

func (r *Runner) startWorker(ctx context.Context, partition int32) (*worker, error) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &worker{
		r: r, partition: partition, ctx: wctx, cancel: cancel,
		batches: make(chan fetched, 2),
		quit:    make(chan struct{}), done: make(chan struct{}),
		cursors: map[string]uint64{}, recent: map[string]*recent{}, parked: map[string]bool{},
		dirty: map[string]uint64{}, committed: -1, lastFlush: time.Now(),
	}
	if r.cfg.Fencer != nil {
		f, err := r.cfg.Fencer.AcquireFence(ctx, r.cfg.Projection.Name(), partition)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("kafkastore: runner %s: fence for partition %d: %w", r.cfg.Group, partition, err)
		}
		w.fence = &f
		w.ctx = framework.WithFence(wctx, f)
	}
	if err := w.refreshParked(); err != nil {
		cancel()
		return nil, err
	}
	r.wg.Go(w.run)
	r.cfg.Logger.InfoContext(ctx, "partition assigned", "group", r.cfg.Group, "partition", partition, "fence", w.fence)
	return w, nil
}

// stop asks the worker to finish: with commit, after storing its cursors
// and committing; without, at once.
func (w *worker) stop(commit bool) {
	w.once.Do(func() {
		w.commit = commit
		if !commit {
			w.cancel()
		}
		close(w.quit)
	})
}

// abort cancels the worker's writes, for a shutdown past its deadline.
func (w *worker) abort() { w.cancel() }

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	tick := time.NewTicker(min(w.r.cfg.FlushInterval, w.r.cfg.ParkedRefresh))
	defer tick.Stop()
	for {
		select {
		case <-w.quit:
			if w.commit {
				if err := w.flush(); err != nil {
					w.r.cfg.Logger.Warn("final flush failed; the next owner re-reads from the last commit", "partition", w.partition, "err", err)
				}
			}
			return
		case f := <-w.batches:
			w.highWatermark.Store(f.highWatermark)
			if !w.until(func() error { return w.process(f.records) }) {
				return
			}
			if time.Since(w.lastFlush) >= w.r.cfg.FlushInterval || len(w.dirty) >= w.r.cfg.BatchSize {
				if !w.until(w.flush) {
					return
				}
			}
		case <-tick.C:
			if time.Since(w.lastFlush) >= w.r.cfg.FlushInterval && !w.until(w.flush) {
				return
			}
			if time.Since(w.lastParked) >= w.r.cfg.ParkedRefresh && !w.until(w.resumeResolved) {
				return
			}
		}
	}
}

// until runs step until it succeeds, backing off between tries: a store
// that is down stalls the partition, it does not skip anything (a retried
// batch skips what it applied before, by the cursors). It reports false
// when the worker must stop: fenced, or told to quit meanwhile.
func (w *worker) until(step func() error) bool {
	for attempt := 1; ; attempt++ {
		err := step()
		if err == nil {
			return true
		}
		if isFenced(err) || w.ctx.Err() != nil {
			w.fail(err)
			return false
		}
		w.r.setLastError(err)
		w.r.cfg.Logger.Warn("partition worker step failed; retrying", "partition", w.partition, "attempt", attempt, "err", err)
		select {
		case <-time.After(w.r.cfg.Retry.backoff(attempt)):
		case <-w.quit:
			return false
		}
	}
}

// fail stops the worker after an error it cannot get past: a fencing
// rejection (another replica owns the partition now) or a store that stays
// down. Nothing is committed; the partition's next owner re-reads from the
// last commit and the cursors skip what was applied.
func (w *worker) fail(err error) {
	w.r.setLastError(err)
	if isFenced(err) {
		w.r.cfg.Logger.Warn("partition taken over by another replica; stopping its worker", "partition", w.partition, "err", err)
	} else {
		w.r.cfg.Logger.Error("partition worker stopped", "partition", w.partition, "err", err)
	}
	// Leave the group's view consistent: the poll loop drops records for
	// partitions without a worker, and a rebalance reassigns it.
	w.cancel()
}

func isFenced(err error) bool {
	var f interface{ Fenced() bool }
	return errors.As(err, &f) && f.Fenced()
}

type item struct {
	rec *kgo.Record
	ev  framework.Event
	err error
}

// process applies one polled batch of the partition.
func (w *worker) process(recs []*kgo.Record) error {
	// The batch span links to the traces of its records (the first
	// maxBatchLinks); each event's apply span continues its own trace.
	var links []trace.Link
	for _, rec := range recs {
		if len(links) == maxBatchLinks {
			break
		}
		if rec.Context != nil {
			if sc := trace.SpanContextFromContext(rec.Context); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
	}
	ctx, span := w.r.tracer.Start(w.ctx, "projector.batch "+w.r.cfg.Projection.Name(), trace.WithLinks(links...),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", w.r.cfg.Topic),
			attribute.String("messaging.consumer.group.name", w.r.cfg.Group),
			attribute.Int64("messaging.destination.partition.id", int64(w.partition)),
			attribute.Int("messaging.batch.message_count", len(recs)),
			attribute.String("projector.projection", w.r.cfg.Projection.Name()),
		))
	defer span.End()

	items := make([]item, len(recs))
	var unknown []string
	seen := map[string]bool{}
	for i, rec := range recs {
		items[i].rec = rec
		items[i].ev, items[i].err = DecodeRecord(rec)
		if items[i].err == nil {
			id := items[i].ev.StreamID
			if _, ok := w.cursors[id]; !ok && !seen[id] {
				seen[id] = true
				unknown = append(unknown, id)
			}
		}
	}
	if len(unknown) > 0 {
		if err := w.lookupCursors(ctx, unknown); err != nil {
			return err
		}
	}

	run := make([]framework.Event, 0, len(items))
	runRecs := make([]*kgo.Record, 0, len(items))
	next := map[string]uint64{}     // expected next sequence within this run
	inRun := map[streamSeq]string{} // event IDs of the run, for conflicts
	var held, skipped int64
	defer func() {
		w.r.metrics.held.Add(ctx, held)
		w.r.metrics.skipped.Add(ctx, skipped)
	}()
	for _, it := range items {
		if it.err != nil {
			if err := w.parkMalformed(ctx, it.rec, it.err); err != nil {
				return err
			}
			continue
		}
		e := it.ev
		if w.parked[e.StreamID] {
			held++
			continue
		}
		cur, ok := next[e.StreamID]
		if !ok {
			cur = w.cursors[e.StreamID]
		}
		switch {
		case e.Sequence <= cur:
			other, conflict := w.conflicting(e)
			if id, ok := inRun[streamSeq{e.StreamID, e.Sequence}]; ok {
				other, conflict = id, id != e.EventID
			}
			if conflict {
				err := fmt.Errorf("sequence %d of stream %s was applied as event %s; event %s repeats it", e.Sequence, e.StreamID, other, e.EventID)
				if err := w.park(ctx, e, it.rec, framework.ParkConflict, err, 0); err != nil {
					return err
				}
				continue
			}
			skipped++
		case e.Sequence > cur+1:
			gap := &framework.GapError{StreamID: e.StreamID, Cursor: cur, Got: e.Sequence, EventID: e.EventID}
			if err := w.park(ctx, e, it.rec, framework.ParkGap, gap, 0); err != nil {
				return err
			}
		default:
			run = append(run, e)
			runRecs = append(runRecs, it.rec)
			next[e.StreamID] = e.Sequence
			inRun[streamSeq{e.StreamID, e.Sequence}] = e.EventID
		}
	}
	err := w.applyRun(ctx, run, runRecs)
	w.r.metrics.applied.Add(ctx, w.applied)
	w.applied = 0
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if n := len(recs); n > 0 {
		w.last = recs[n-1]
		w.position.Store(w.last.Offset + 1)
		w.lastTimestamp.Store(w.last.Timestamp.UnixNano())
	}
	return nil
}

// HeadStore is implemented by checkpoint stores that also keep the event
// applied at each cursor (redischeckpoint.Store): the conflict check then
// starts with it, so a repeated sequence with another event ID is
// recognised also after a restart or rebalance.
type HeadStore interface {
	Heads(ctx context.Context, name string, streamIDs []string) (map[string]framework.StreamHead, error)
}

// lookupCursors loads the cursors of streams new to this worker, in one
// round trip.
func (w *worker) lookupCursors(ctx context.Context, streams []string) error {
	name := w.r.cfg.Projection.Name()
	if l, ok := w.r.cfg.Checkpoints.(HeadStore); ok {
		heads, err := l.Heads(ctx, name, streams)
		if err != nil {
			return fmt.Errorf("kafkastore: look up %d cursors: %w", len(streams), err)
		}
		for _, id := range streams {
			h := heads[id]
			w.cursors[id] = h.Sequence
			if h.EventID != "" {
				w.remember(id, h.Sequence, h.EventID)
			}
		}
		return nil
	}
	found, err := w.r.cfg.Checkpoints.Cursors(ctx, name, streams)
	if err != nil {
		return fmt.Errorf("kafkastore: look up %d cursors: %w", len(streams), err)
	}
	for _, id := range streams {
		w.cursors[id] = found[id]
	}
	return nil
}

// conflicting reports whether e repeats a recently applied sequence of its
// stream with another event ID.
func (w *worker) conflicting(e framework.Event) (string, bool) {
	r := w.recent[e.StreamID]
	if r == nil {
		return "", false
	}
	for i, seq := range r.seq {
		if seq == e.Sequence && r.id[i] != e.EventID {
			return r.id[i], true
		}
	}
	return "", false
}

func (w *worker) markApplied(e framework.Event) {
	w.cursors[e.StreamID] = e.Sequence
	w.dirty[e.StreamID] = e.Sequence
	w.remember(e.StreamID, e.Sequence, e.EventID)
	w.applied++
}

func (w *worker) remember(stream string, seq uint64, eventID string) {
	r := w.recent[stream]
	if r == nil {
		r = &recent{}
		w.recent[stream] = r
	}
	r.seq[r.next], r.id[r.next] = seq, eventID
	r.next = (r.next + 1) % conflictWindow
}

// unit is one event to apply, with its record (nil when read from the
// event store) and its apply span.
type unit struct {
	ev   framework.Event
	rec  *kgo.Record
	span trace.Span
}

// applyRun applies the events, retrying a failing one with backoff and
// parking its stream when retries run out; the failing stream's later
// events in the run are held, the others applied. Each event gets an apply
// span, a child of its record's context (the kotel receive span, which
// continues the producer's trace).
func (w *worker) applyRun(ctx context.Context, events []framework.Event, recs []*kgo.Record) error {
	run := make([]unit, len(events))
	for i, e := range events {
		run[i] = unit{ev: e}
		if i < len(recs) {
			run[i].rec = recs[i]
		}
		run[i].span = w.startApplySpan(ctx, run[i])
	}
	defer func() { // spans of events left unapplied by an error
		for _, u := range run {
			u.span.SetStatus(codes.Error, "not applied: the worker stopped")
			u.span.End()
		}
	}()
	for len(run) > 0 {
		start := time.Now()
		n, err := w.applyBatch(ctx, run)
		w.r.metrics.applyLatency.Record(ctx, time.Since(start).Seconds())
		for _, u := range run[:n] {
			w.markApplied(u.ev)
			u.span.End()
		}
		run = run[n:]
		if err == nil {
			return nil
		}
		if isFenced(err) || errors.Is(err, context.Canceled) {
			return err
		}
		failed := run[0]
		attempts, err := w.retry(ctx, failed, err)
		failed.span.SetAttributes(attribute.Int("projector.attempts", attempts))
		if err == nil {
			w.markApplied(failed.ev)
			failed.span.End()
			run = run[1:]
			continue
		}
		if isFenced(err) || errors.Is(err, context.Canceled) {
			return err
		}
		reason := framework.ParkApplyFailed
		if errors.Is(err, framework.ErrSequenceGap) {
			reason = framework.ParkGap
		}
		failed.span.RecordError(err)
		failed.span.SetStatus(codes.Error, "stream parked: "+err.Error())
		failed.span.SetAttributes(attribute.String("projector.park_reason", reason))
		if perr := w.park(ctx, failed.ev, failed.rec, reason, err, attempts); perr != nil {
			return perr
		}
		failed.span.End()
		kept := make([]unit, 0, len(run)-1)
		for _, u := range run[1:] {
			if u.ev.StreamID != failed.ev.StreamID {
				kept = append(kept, u)
				continue
			}
			u.span.SetAttributes(attribute.Bool("projector.held", true))
			u.span.SetStatus(codes.Error, "held: the stream is parked")
			u.span.End()
		}
		run = kept
	}
	return nil
}

// startApplySpan starts the span of one event's apply.
func (w *worker) startApplySpan(ctx context.Context, u unit) trace.Span {
	parent := ctx
	if u.rec != nil && u.rec.Context != nil {
		parent = u.rec.Context
	} else if u.rec != nil {
		parent = w.r.propagator.Extract(ctx, headerCarrier{u.rec})
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", w.r.cfg.Topic),
		attribute.String("messaging.consumer.group.name", w.r.cfg.Group),
		attribute.Int64("messaging.destination.partition.id", int64(w.partition)),
		attribute.String("projector.projection", w.r.cfg.Projection.Name()),
		attribute.String("projector.stream_id", u.ev.StreamID),
		attribute.Int64("projector.sequence", int64(u.ev.Sequence)),
		attribute.String("projector.event_id", u.ev.EventID),
		attribute.String("projector.event_type", u.ev.Type),
	}
	if u.rec != nil {
		attrs = append(attrs, attribute.Int64("messaging.kafka.offset", u.rec.Offset))
	}
	_, span := w.r.tracer.Start(parent, "apply "+w.r.cfg.Projection.Name(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return span
}

// applyBatch applies the units with the projection's batch capability, or
// one by one; a panic becomes an error naming the event.
func (w *worker) applyBatch(ctx context.Context, run []unit) (n int, err error) {
	p := w.r.cfg.Projection
	if b, ok := p.(framework.BatchApplier); ok && len(run) > 1 {
		events := make([]framework.Event, len(run))
		for i, u := range run {
			events[i] = u.ev
		}
		n, err, panicked := applyBatchRecovering(ctx, b, events)
		if !panicked {
			n = min(max(n, 0), len(events))
			if err == nil && n < len(events) {
				err = fmt.Errorf("ApplyBatch applied %d of %d events and returned no error", n, len(events))
			}
			return n, err
		}
		// A panic names no event: apply one by one to find it (a batch
		// that panicked counts as not applied).
	}
	for i, u := range run {
		if err := w.applyOne(trace.ContextWithSpan(ctx, u.span), u.ev); err != nil {
			return i, err
		}
	}
	return len(run), nil
}

func applyBatchRecovering(ctx context.Context, b framework.BatchApplier, events []framework.Event) (n int, err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			n, err, panicked = 0, &framework.PanicError{Value: v, Stack: debug.Stack()}, true
		}
	}()
	n, err = b.ApplyBatch(ctx, events)
	return n, err, false
}

func (w *worker) applyOne(ctx context.Context, e framework.Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &framework.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return w.r.cfg.Projection.Apply(ctx, e)
}

// retry re-applies one event with backoff. It returns the attempts made
// and the last error, nil once applied.
func (w *worker) retry(ctx context.Context, u unit, err error) (int, error) {
	e := u.ev
	ctx = trace.ContextWithSpan(ctx, u.span)
	policy := w.r.cfg.Retry
	attempt := 1
	for ; attempt < policy.Attempts; attempt++ {
		if errors.Is(err, framework.ErrSequenceGap) || isFenced(err) {
			return attempt, err
		}
		w.r.cfg.Logger.Warn("apply failed; retrying", "stream", e.StreamID, "sequence", e.Sequence, "attempt", attempt, "err", err)
		select {
		case <-time.After(policy.backoff(attempt)):
		case <-ctx.Done():
			return attempt, ctx.Err()
		case <-w.quit:
			return attempt, context.Canceled // stopping: the next owner retries
		}
		if err = w.applyOne(ctx, e); err == nil {
			return attempt + 1, nil
		}
	}
	return attempt, err
}

// flush stores the applied cursors, then commits the offsets processed.
func (w *worker) flush() error {
	w.lastFlush = time.Now()
	if len(w.dirty) > 0 {
		start := time.Now()
		if err := w.r.cfg.Checkpoints.Advance(w.ctx, w.r.cfg.Projection.Name(), w.dirty); err != nil {
			return fmt.Errorf("kafkastore: store %d cursors of partition %d: %w", len(w.dirty), w.partition, err)
		}
		w.r.metrics.checkpointLatency.Record(w.ctx, time.Since(start).Seconds())
		clear(w.dirty)
	}
	if w.last == nil || w.last.Offset+1 <= w.committed {
		return nil
	}
	if err := w.r.client.CommitRecords(w.ctx, w.last); err != nil {
		return fmt.Errorf("kafkastore: commit offset %d of partition %d: %w", w.last.Offset+1, w.partition, err)
	}
	w.committed = w.last.Offset + 1
	return nil
}

// park holds a stream at e: it records the stream as parked, publishes the
// event to the dead-letter topic with the reason, and from then on holds
// the stream's later events in this partition.
func (w *worker) park(ctx context.Context, e framework.Event, rec *kgo.Record, reason string, cause error, attempts int) error {
	p := framework.ParkedStream{
		StreamID: e.StreamID, Sequence: e.Sequence, EventID: e.EventID, Type: e.Type,
		Reason: reason, Error: cause.Error(), Attempts: attempts, ParkedAt: time.Now().UTC(),
	}
	if rec != nil {
		p.Position = &framework.Position{Partition: rec.Partition, Offset: rec.Offset}
	}
	return w.parkStream(ctx, p, rec)
}

func (w *worker) parkMalformed(ctx context.Context, rec *kgo.Record, cause error) error {
	id := string(rec.Key)
	if framework.ValidateStreamID(id) != nil {
		id = fmt.Sprintf("malformed/%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)
	}
	p := framework.ParkedStream{
		StreamID: id, Reason: framework.ParkMalformed, Error: cause.Error(), ParkedAt: time.Now().UTC(),
		Position: &framework.Position{Partition: rec.Partition, Offset: rec.Offset},
	}
	if seq, err := strconv.ParseUint(headerValue(rec, HeaderSequence), 10, 64); err == nil {
		p.Sequence = seq
	}
	return w.parkStream(ctx, p, rec)
}

func (w *worker) parkStream(ctx context.Context, p framework.ParkedStream, rec *kgo.Record) error {
	if rec != nil {
		if err := w.deadLetter(ctx, p, rec); err != nil {
			return err
		}
	}
	if err := w.r.cfg.Parked.Park(ctx, w.r.cfg.Projection.Name(), p); err != nil {
		return fmt.Errorf("kafkastore: park stream %s: %w", p.StreamID, err)
	}
	w.parked[p.StreamID] = true
	w.r.metrics.parked.Add(ctx, 1)
	trace.SpanFromContext(ctx).AddEvent("stream parked", trace.WithAttributes(
		attribute.String("projector.stream_id", p.StreamID), attribute.Int64("projector.sequence", int64(p.Sequence)),
		attribute.String("projector.park_reason", p.Reason), attribute.String("error.message", p.Error)))
	w.r.setLastError(fmt.Errorf("stream %s parked at sequence %d (%s): %s", p.StreamID, p.Sequence, p.Reason, p.Error))
	w.r.cfg.Logger.Error("stream parked", "stream", p.StreamID, "sequence", p.Sequence, "reason", p.Reason, "err", p.Error)
	return nil
}

// Dead-letter headers, added to the original record's headers.
const (
	HeaderDLQReason     = "projector.dlq.reason"
	HeaderDLQError      = "projector.dlq.error"
	HeaderDLQProjection = "projector.dlq.projection"
	HeaderDLQSource     = "projector.dlq.source" // topic/partition/offset
	HeaderDLQAttempts   = "projector.dlq.attempts"
	HeaderDLQParkedAt   = "projector.dlq.parked-at"
)

func (w *worker) deadLetter(ctx context.Context, p framework.ParkedStream, rec *kgo.Record) error {
	out := &kgo.Record{
		Topic: w.r.cfg.DeadLetterTopic, Key: rec.Key, Value: rec.Value, Context: ctx,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
			kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(p.Reason)},
			kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(p.Error)},
			kgo.RecordHeader{Key: HeaderDLQProjection, Value: []byte(w.r.cfg.Projection.Name())},
			kgo.RecordHeader{Key: HeaderDLQSource, Value: fmt.Appendf(nil, "%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)},
			kgo.RecordHeader{Key: HeaderDLQAttempts, Value: strconv.AppendInt(nil, int64(p.Attempts), 10)},
			kgo.RecordHeader{Key: HeaderDLQParkedAt, Value: p.ParkedAt.AppendFormat(nil, time.RFC3339Nano)},
		),
	}
	if err := w.r.client.ProduceSync(ctx, out).FirstErr(); err != nil {
		return fmt.Errorf("kafkastore: publish %s@%d to the dead-letter topic %s: %w", p.StreamID, p.Sequence, w.r.cfg.DeadLetterTopic, err)
	}
	return nil
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// refreshParked loads which of the projection's streams are parked.
func (w *worker) refreshParked() error {
	w.lastParked = time.Now()
	parked, err := w.r.cfg.Parked.Parked(w.ctx, w.r.cfg.Projection.Name())
	if err != nil {
		return fmt.Errorf("kafkastore: parked streams of %s: %w", w.r.cfg.Projection.Name(), err)
	}
	now := map[string]bool{}
	for _, p := range parked {
		now[p.StreamID] = true
	}
	w.parked = now
	return nil
}

// resumeResolved catches up the streams this partition held that an admin
// resumed since: it reads each from the event store after its cursor, so
// the events held (and already committed past in the partition) are
// applied in order before the stream flows live again.
func (w *worker) resumeResolved() error {
	before := w.parked
	if err := w.refreshParked(); err != nil {
		return err
	}
	for id := range before {
		if w.parked[id] || !w.owns(id) {
			continue
		}
		if err := w.catchUp(id); err != nil {
			return err
		}
	}
	return nil
}

// owns reports whether the stream lives in this worker's partition.
func (w *worker) owns(streamID string) bool {
	if _, ok := w.cursors[streamID]; ok {
		return true
	}
	if s, ok := w.r.events.(*Store); ok {
		if e, ok, _ := s.Entry(w.ctx, streamID); ok {
			return e.Partition == w.partition
		}
	}
	return false
}

func (w *worker) catchUp(streamID string) error {
	ctx := w.ctx
	found, err := w.r.cfg.Checkpoints.Cursors(ctx, w.r.cfg.Projection.Name(), []string{streamID})
	if err != nil {
		return fmt.Errorf("kafkastore: cursor of %s: %w", streamID, err)
	}
	w.cursors[streamID] = found[streamID]
	var batch []framework.Event
	flush := func() error {
		err := w.applyRun(ctx, batch, nil)
		batch = batch[:0]
		return err
	}
	expect := found[streamID]
	for e, err := range w.r.events.ReadStream(ctx, streamID, found[streamID]) {
		if err != nil {
			return fmt.Errorf("kafkastore: resume %s: %w", streamID, err)
		}
		if w.parked[streamID] {
			break // parked again while resuming
		}
		if e.Sequence != expect+1 {
			gap := &framework.GapError{StreamID: streamID, Cursor: expect, Got: e.Sequence, EventID: e.EventID}
			if err := flush(); err != nil {
				return err
			}
			return w.park(ctx, e, nil, framework.ParkGap, gap, 0)
		}
		expect = e.Sequence
		batch = append(batch, e)
		if len(batch) >= w.r.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	err = flush()
	w.r.metrics.applied.Add(ctx, w.applied)
	w.applied = 0
	if err != nil {
		return err
	}
	w.r.cfg.Logger.Info("resumed parked stream", "stream", streamID, "cursor", w.cursors[streamID])
	return w.flush()
}
