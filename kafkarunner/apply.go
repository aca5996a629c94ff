package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// maxBatchLinks bounds the span links of one batch span.
const maxBatchLinks = 128

type streamSeq struct {
	stream string
	seq    uint64
}

type item struct {
	rec *kgo.Record
	ev  framework.Event
	err error
}

// unit is one event to apply, with its record and the record's index in
// the batch (nil and -1 when read from the event store), and its apply span.
type unit struct {
	ev   framework.Event
	rec  *kgo.Record
	idx  int
	span trace.Span
}

// process applies one polled batch of the partition. When it returns, the
// records before the first one it did not finish are done (applied,
// skipped, held or parked) and s.last is the last of them: a flush commits
// up to there, and no further.
func (s *session) process(recs []*kgo.Record) error {
	r := s.r
	ctx, span := s.batchSpan(recs)
	defer span.End()

	items := make([]item, len(recs))
	var unknown []string
	seen := map[string]bool{}
	for i, rec := range recs {
		items[i].rec = rec
		if rec.Attrs.IsControl() {
			continue
		}
		items[i].ev, items[i].err = kafkastore.DecodeRecord(rec)
		if items[i].err == nil {
			id := items[i].ev.StreamID
			if _, ok := s.cursors[id]; !ok && !seen[id] {
				seen[id] = true
				unknown = append(unknown, id)
			}
		}
	}
	if len(unknown) > 0 {
		if err := s.lookupHeads(ctx, unknown); err != nil {
			return err
		}
		r.noteStreams(unknown)
	}

	run := make([]unit, 0, len(items))
	next := map[string]uint64{}     // expected next sequence within this run
	inRun := map[streamSeq]string{} // event IDs of the run, for conflicts
	var held, skipped, unverified int64
	defer func() {
		r.metrics.held.Add(ctx, held)
		r.metrics.skipped.Add(ctx, skipped)
		r.metrics.unverified.Add(ctx, unverified)
	}()
	// parkAt parks a stream at a record after applying the run so far: the
	// stream's earlier events in this batch must not wait behind its park
	// (a failure after the park would leave them unapplied, and the park
	// holds only records from its own offset on).
	// A batch retried in place (a failed step) is processed again: records
	// whose park, hold or dead letter is done are not handled twice.
	handled := s.handled
	parkAt := func(stream string, off int64, park func() error) error {
		if len(run) > 0 {
			_, err := s.applyRun(ctx, run)
			r.metrics.applied.Add(ctx, s.applied)
			s.applied = 0
			if err != nil {
				return err // the batch is processed again: the cursors skip what was applied
			}
			run = run[:0]
			clear(next)
			clear(inRun)
			if stream != "" && s.holds(stream, off) { // its apply in the run parked it
				held++
				s.handled = off
				return nil
			}
		}
		if err := park(); err != nil {
			return err
		}
		s.handled = off
		return nil
	}
	for i, it := range items {
		// A transaction's marker (appends are transactions) is passed
		// over: done with the records before it, so that the committed
		// offset and the lag reach the partition's end.
		if it.rec.Offset <= handled || it.rec.Attrs.IsControl() {
			continue
		}
		if s.misplaced(it.rec) {
			if err := parkAt("", it.rec.Offset, func() error { return s.parkMisplaced(ctx, it.rec, it.ev, it.err) }); err != nil {
				return err
			}
			continue
		}
		if it.err != nil {
			if err := parkAt("", it.rec.Offset, func() error { return s.parkMalformed(ctx, it.rec, it.err) }); err != nil {
				return err
			}
			continue
		}
		e := it.ev
		if s.holds(e.StreamID, it.rec.Offset) {
			held++
			continue
		}
		cur, ok := next[e.StreamID]
		if !ok {
			cur = s.cursors[e.StreamID]
		}
		switch framework.Classify(cur, e) {
		case framework.Duplicate:
			switch v := s.duplicate(e, it.rec.Offset, inRun); {
			case v.conflict:
				if err := parkAt(e.StreamID, it.rec.Offset, func() error {
					return s.park(ctx, e, it.rec, controlplane.ParkConflict, errors.New(v.reason), 0)
				}); err != nil {
					return err
				}
			case !v.verified:
				unverified++
				skipped++
				r.onSkipped(ctx, e, false)
				r.cfg.Logger.Warn("duplicate skipped without verifying its event ID", "stream", e.StreamID, "sequence", e.Sequence,
					"event_id", e.EventID, "partition", s.p.id, "offset", it.rec.Offset, "cursor", cur)
			default:
				skipped++
				r.onSkipped(ctx, e, true)
			}
		case framework.Gap:
			gap := framework.NewGapError(cur, e)
			if err := parkAt(e.StreamID, it.rec.Offset, func() error { return s.park(ctx, e, it.rec, controlplane.ParkGap, gap, 0) }); err != nil {
				return err
			}
		default:
			run = append(run, unit{ev: e, rec: it.rec, idx: i})
			next[e.StreamID] = e.Sequence
			inRun[streamSeq{e.StreamID, e.Sequence}] = e.EventID
		}
	}
	rest, err := s.applyRun(ctx, run)
	r.metrics.applied.Add(ctx, s.applied)
	s.applied = 0
	done := len(recs)
	if len(rest) > 0 {
		done = rest[0].idx
	}
	if done > 0 {
		s.last = recs[done-1]
		s.p.position.Store(s.last.Offset + 1)
		s.p.lastTimestamp.Store(s.last.Timestamp.UnixNano())
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// lookupHeads loads the cursors (and, from a HeadStore, the events applied
// at them) of streams new to this session, in one round trip.
func (s *session) lookupHeads(ctx context.Context, streams []string) error {
	name := s.r.cfg.Projection.Name()
	if hs, ok := s.r.cfg.Checkpoints.(controlplane.HeadStore); ok {
		heads, err := hs.Heads(ctx, name, streams)
		if err != nil {
			return fmt.Errorf("kafkarunner: look up %d cursors: %w", len(streams), err)
		}
		for _, id := range streams {
			h := heads[id]
			s.cursors[id] = h.Sequence
			if h.EventID == "" {
				continue
			}
			off := int64(-1)
			if h.Position != nil && h.Position.Partition == s.p.id {
				off = h.Position.Offset
			}
			s.heads[id] = head{seq: h.Sequence, eventID: h.EventID, offset: off}
			s.recent.Remember(id, h.Sequence, h.EventID)
		}
		return nil
	}
	found, err := s.r.cfg.Checkpoints.Cursors(ctx, name, streams)
	if err != nil {
		return fmt.Errorf("kafkarunner: look up %d cursors: %w", len(streams), err)
	}
	for _, id := range streams {
		s.cursors[id] = found[id]
	}
	return nil
}

func (s *session) markApplied(e framework.Event) {
	s.cursors[e.StreamID] = e.Sequence
	if !s.r.keepsCursors { // else the projection wrote cursor and head with the event
		s.dirty[e.StreamID] = true
	}
	off := int64(-1)
	if e.Position != nil && e.Position.Partition == s.p.id {
		off = e.Position.Offset
	}
	// The head's offset is the highest offset of the stream processed: a
	// resume applies events that waited for missing ones out of offset
	// order, and every record at or before it has been classified.
	if h, ok := s.heads[e.StreamID]; ok && off >= 0 && h.offset > off {
		off = h.offset
	}
	s.heads[e.StreamID] = head{seq: e.Sequence, eventID: e.EventID, offset: off}
	s.recent.Remember(e.StreamID, e.Sequence, e.EventID)
	s.applied++
	s.r.onApplied(s.ctx, e)
}

// applyRun applies the units in order, retrying a failing one with backoff
// and parking its stream when retries run out; the failing stream's later
// events in the run are held, the others applied. On an error it returns
// the units it did not get to (the first of them is where the partition's
// progress stops). Each event gets an apply span, a child of its record's
// context (the kotel receive span, which continues the producer's trace).
func (s *session) applyRun(ctx context.Context, run []unit) ([]unit, error) {
	for i := range run {
		run[i].span = s.eventSpan(ctx, run[i])
	}
	defer func() { // spans of events left unapplied by an error
		for _, u := range run {
			u.span.SetStatus(codes.Error, "not applied: the worker stopped")
			u.span.End()
		}
	}()
	for len(run) > 0 {
		start := time.Now()
		n, err := s.applyBatch(ctx, run)
		s.r.metrics.applyLatency.Record(ctx, time.Since(start).Seconds())
		for _, u := range run[:n] {
			s.markApplied(u.ev)
			u.span.End()
		}
		run = run[n:]
		if err == nil {
			return nil, nil
		}
		if fatal(err) || errors.Is(err, framework.ErrUnavailable) {
			// Unavailable: the store's fault, not the event's. The step
			// retries the batch in place for as long as it lasts.
			return run, err
		}
		failed := run[0]
		s.failingSpan(ctx, &failed)
		run[0].span = failed.span // ended by the deferred loop if an error returns
		attempts := 1
		if !errors.Is(err, framework.ErrPartialApply) { // never again over a partial write
			attempts, err = s.retry(ctx, failed, err)
		}
		failed.span.SetAttributes(attribute.Int("projector.attempts", attempts))
		if err == nil {
			s.markApplied(failed.ev)
			failed.span.End()
			run = run[1:]
			continue
		}
		if fatal(err) || errors.Is(err, framework.ErrUnavailable) {
			return run, err
		}
		reason := controlplane.ParkApplyFailed
		switch {
		case errors.Is(err, framework.ErrSequenceGap):
			reason = controlplane.ParkGap
		case errors.Is(err, framework.ErrPartialApply):
			reason = controlplane.ParkPartialApply
			err = fmt.Errorf("%w (the read model holds part of this event: replay the projection; retrying or skipping the stream does not repair it)", err)
		}
		failed.span.RecordError(err)
		failed.span.SetStatus(codes.Error, "stream parked: "+err.Error())
		failed.span.SetAttributes(attribute.String("projector.park_reason", reason))
		if perr := s.park(ctx, failed.ev, failed.rec, reason, err, attempts); perr != nil {
			return run, perr
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
	return nil, nil
}

// applyBatch applies the units through the shared delivery rules
// ([framework.ApplyEvents]: the projection's batch capability or one by
// one, panics recovered, the batch's count checked). The events are applied
// with the session's context (its fence), each with its apply span, not
// the span context's cancellation.
func (s *session) applyBatch(ctx context.Context, run []unit) (n int, err error) {
	events := make([]framework.Event, len(run))
	for i, u := range run {
		events[i] = u.ev
	}
	n, err = framework.ApplyEvents(ctx, s.r.cfg.Projection, events, framework.ApplyOptions{
		EventContext: func(ctx context.Context, i int) context.Context { return spanContext(ctx, run[i]) },
	})
	if err != nil && n == len(run) {
		// The batch says every event was applied, and an error: the
		// events count as applied (applying one again could double its
		// effect); the error is logged.
		s.r.cfg.Logger.Warn("ApplyBatch reported every event applied and an error", "partition", s.p.id, "events", n, "err", err)
		err = nil
	}
	return n, err
}

// retry re-applies one event with backoff. It returns the attempts made
// and the last error, nil once applied, errStopping when the partition is
// told to stop meanwhile (the event is then left to the next owner).
func (s *session) retry(ctx context.Context, u unit, err error) (int, error) {
	e := u.ev
	ctx = spanContext(ctx, u)
	policy := s.r.cfg.Retry
	attempt := 1
	for ; attempt < policy.Attempts; attempt++ {
		if errors.Is(err, framework.ErrSequenceGap) || fatal(err) || errors.Is(err, framework.ErrUnavailable) || !s.r.retryable(err) {
			return attempt, err
		}
		s.r.cfg.Logger.Warn("apply failed; retrying", "stream", e.StreamID, "sequence", e.Sequence, "attempt", attempt, "err", err)
		if !s.p.sleep(policy.backoff(attempt)) {
			return attempt, errStopping
		}
		if err = framework.ApplyRecovering(ctx, s.r.cfg.Projection, e); err == nil {
			return attempt + 1, nil
		}
	}
	return attempt, err
}
