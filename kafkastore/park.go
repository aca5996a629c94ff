package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/framework"
)

// Dead-letter headers, added to the original record's headers.
const (
	HeaderDLQReason     = "projector.dlq.reason"
	HeaderDLQError      = "projector.dlq.error"
	HeaderDLQProjection = "projector.dlq.projection"
	HeaderDLQSource     = "projector.dlq.source" // topic/partition/offset
	HeaderDLQAttempts   = "projector.dlq.attempts"
	HeaderDLQParkedAt   = "projector.dlq.parked-at"
	// HeaderDLQReference marks a dead letter that carries no copy of the
	// event: the copy could not be written (too large for the dead-letter
	// topic, for example); the event is at HeaderDLQSource. Its value is
	// why the copy failed.
	HeaderDLQReference = "projector.dlq.reference"
)

// maxDLQErrorBytes bounds the error text put into dead-letter headers.
const maxDLQErrorBytes = 4096

// deadLetterTimeout bounds one attempt to write a dead letter.
const deadLetterTimeout = 10 * time.Second

// park holds a stream at e: it records the stream as parked, publishes the
// event to the dead-letter topic with the reason, and from then on holds
// the stream's later events in this partition.
func (s *session) park(ctx context.Context, e framework.Event, rec *kgo.Record, reason string, cause error, attempts int) error {
	p := framework.ParkedStream{
		StreamID: e.StreamID, Sequence: e.Sequence, EventID: e.EventID, Type: e.Type,
		Reason: reason, Error: cause.Error(), Attempts: attempts, ParkedAt: time.Now().UTC(),
	}
	if rec != nil {
		p.Position = &framework.Position{Partition: rec.Partition, Offset: rec.Offset}
	}
	return s.parkStream(ctx, p, rec)
}

func (s *session) parkMalformed(ctx context.Context, rec *kgo.Record, cause error) error {
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
	return s.parkStream(ctx, p, rec)
}

// parkStream records the parked stream first, with the session's fence (a
// replica that lost the partition is refused here and publishes nothing),
// then writes the dead letter: a copy of the record, or a reference to it
// when the copy cannot be written, or nothing yet when the dead-letter
// topic cannot be reached (the record says "pending" and the partition's
// worker retries). A dead letter that cannot be written never stops the
// stream from being parked, nor the partition.
func (s *session) parkStream(ctx context.Context, p framework.ParkedStream, rec *kgo.Record) error {
	name := s.r.cfg.Projection.Name()
	if rec != nil {
		p.DeadLetter = framework.DeadLetterPending
	}
	if err := s.r.cfg.Parked.Park(ctx, name, p); err != nil {
		return fmt.Errorf("kafkastore: park stream %s: %w", p.StreamID, err)
	}
	s.parked[p.StreamID] = true
	s.r.metrics.parked.Add(ctx, 1)
	trace.SpanFromContext(ctx).AddEvent("stream parked", trace.WithAttributes(
		attribute.String("projector.stream_id", p.StreamID), attribute.Int64("projector.sequence", int64(p.Sequence)),
		attribute.String("projector.park_reason", p.Reason), attribute.String("error.message", p.Error)))
	s.r.setLastError(fmt.Errorf("stream %s parked at sequence %d (%s): %s", p.StreamID, p.Sequence, p.Reason, p.Error))
	s.r.cfg.Logger.Error("stream parked", "stream", p.StreamID, "sequence", p.Sequence, "reason", p.Reason, "err", p.Error, "partition", s.p.id)
	if rec == nil {
		return nil
	}
	s.deadLetter(ctx, &p, rec)
	return s.recordDeadLetter(ctx, p)
}

// recordDeadLetter stores what became of a parked stream's dead letter,
// unless the stream was resolved meanwhile. A failure other than fencing is
// logged: the record stays "pending" and the dead letter is retried as a
// reference.
func (s *session) recordDeadLetter(ctx context.Context, p framework.ParkedStream) error {
	if _, err := s.r.cfg.Parked.UpdateParked(ctx, s.r.cfg.Projection.Name(), p); err != nil {
		if fatal(err) {
			return fmt.Errorf("kafkastore: record the dead letter of %s: %w", p.StreamID, err)
		}
		s.r.cfg.Logger.Warn("cannot record the dead letter of a parked stream; it is retried", "stream", p.StreamID, "err", err)
	}
	return nil
}

// deadLetter publishes the parked event to the dead-letter topic and sets
// p.DeadLetter to what it managed: a copy; a reference when the copy is too
// large; nothing yet ("pending") when the topic cannot be reached.
func (s *session) deadLetter(ctx context.Context, p *framework.ParkedStream, rec *kgo.Record) {
	if s.r.deadLetterDown() {
		p.DeadLetter, p.DeadLetterError = framework.DeadLetterPending, "the dead-letter topic failed moments ago; retried later"
		return
	}
	headers := append(append([]kgo.RecordHeader(nil), rec.Headers...), s.dlqHeaders(p, rec.Topic)...)
	cp := &kgo.Record{Topic: s.r.cfg.DeadLetterTopic, Key: rec.Key, Value: rec.Value, Headers: headers}
	copyErr := s.produce(ctx, cp)
	switch {
	case copyErr == nil:
		p.DeadLetter, p.DeadLetterError = framework.DeadLetterCopied, ""
	case errors.Is(copyErr, kerr.MessageTooLarge) || errors.Is(copyErr, kerr.RecordListTooLarge):
		s.r.cfg.Logger.Warn("a parked event is too large for the dead-letter topic; writing a reference instead", "stream", p.StreamID,
			"topic", s.r.cfg.DeadLetterTopic, "bytes", len(rec.Value), "err", copyErr)
		s.deadLetterReference(ctx, p, rec.Topic, rec.Key, copyErr)
	default:
		// The topic cannot be reached: do not hold the partition up
		// with a second attempt; the worker retries a reference later.
		p.DeadLetter, p.DeadLetterError = framework.DeadLetterPending, truncate(copyErr.Error(), maxDLQErrorBytes)
		s.r.markDeadLetterDown()
		s.r.cfg.Logger.Error("cannot write the dead letter of a parked stream; the stream is parked and the dead letter retried",
			"stream", p.StreamID, "topic", s.r.cfg.DeadLetterTopic, "err", copyErr)
	}
}

// deadLetterPause is how long the workers skip the dead-letter topic after
// it could not be reached (their parks record the dead letter as pending).
// A variable for tests.
var deadLetterPause = 30 * time.Second

func (r *Runner) deadLetterDown() bool {
	return time.Now().UnixNano() < r.dlqDownUntil.Load()
}

func (r *Runner) markDeadLetterDown() {
	r.dlqDownUntil.Store(time.Now().Add(deadLetterPause).UnixNano())
}

// deadLetterReference publishes a record naming where the parked event is,
// without its payload.
func (s *session) deadLetterReference(ctx context.Context, p *framework.ParkedStream, topic string, key []byte, why error) {
	headers := append(s.dlqHeaders(p, topic), kgo.RecordHeader{Key: HeaderDLQReference, Value: []byte(truncate(why.Error(), maxDLQErrorBytes))})
	ref := &kgo.Record{Topic: s.r.cfg.DeadLetterTopic, Key: key, Headers: headers}
	if err := s.produce(ctx, ref); err != nil {
		s.r.markDeadLetterDown()
		p.DeadLetter = framework.DeadLetterPending
		p.DeadLetterError = truncate(fmt.Sprintf("copy: %v; reference: %v", why, err), maxDLQErrorBytes)
		s.r.cfg.Logger.Error("cannot write the dead letter of a parked stream; the stream is parked and the dead letter retried", "stream", p.StreamID, "err", err)
		return
	}
	p.DeadLetter = framework.DeadLetterReference
	p.DeadLetterError = truncate(why.Error(), maxDLQErrorBytes)
}

func (s *session) dlqHeaders(p *framework.ParkedStream, topic string) []kgo.RecordHeader {
	source := topic + "/?/?"
	if p.Position != nil {
		source = fmt.Sprintf("%s/%d/%d", topic, p.Position.Partition, p.Position.Offset)
	}
	return []kgo.RecordHeader{
		{Key: HeaderDLQReason, Value: []byte(p.Reason)},
		{Key: HeaderDLQError, Value: []byte(truncate(p.Error, maxDLQErrorBytes))},
		{Key: HeaderDLQProjection, Value: []byte(s.r.cfg.Projection.Name())},
		{Key: HeaderDLQSource, Value: []byte(source)},
		{Key: HeaderDLQAttempts, Value: strconv.AppendInt(nil, int64(p.Attempts), 10)},
		{Key: HeaderDLQParkedAt, Value: p.ParkedAt.AppendFormat(nil, time.RFC3339Nano)},
	}
}

func (s *session) produce(ctx context.Context, rec *kgo.Record) error {
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	rec.Context = ctx
	return s.r.client.ProduceSync(ctx, rec).FirstErr()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// retryDeadLetters writes the dead letters still pending for streams this
// partition parked, as references.
func (s *session) retryDeadLetters(list []framework.ParkedStream) error {
	for _, p := range list {
		if p.DeadLetter != framework.DeadLetterPending || p.Position == nil || p.Position.Partition != s.p.id || s.r.deadLetterDown() {
			continue
		}
		if err := s.checkState(); err != nil { // no dead letters from a replica that lost the partition
			return err
		}
		s.deadLetterReference(s.ctx, &p, s.r.cfg.Topic, []byte(p.StreamID), fmt.Errorf("the copy was not written when the stream was parked: %s", p.DeadLetterError))
		if p.DeadLetter == framework.DeadLetterPending {
			continue
		}
		if err := s.recordDeadLetter(s.ctx, p); err != nil {
			return err
		}
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
func (s *session) refreshParked() error {
	_, err := s.loadParked()
	return err
}

func (s *session) loadParked() ([]framework.ParkedStream, error) {
	s.lastParked = time.Now()
	parked, err := s.r.cfg.Parked.Parked(s.ctx, s.r.cfg.Projection.Name())
	if err != nil {
		return nil, fmt.Errorf("kafkastore: parked streams of %s: %w", s.r.cfg.Projection.Name(), err)
	}
	now := make(map[string]bool, len(parked))
	for _, p := range parked {
		now[p.StreamID] = true
	}
	s.parked = now
	return parked, nil
}

// resumeResolved catches up the streams this partition held that an admin
// resumed since: it reads each from the event store after its cursor, so
// the events held (and already committed past in the partition) are
// applied in order before the stream flows live again. It also retries
// pending dead letters.
func (s *session) resumeResolved() error {
	before := s.parked
	list, err := s.loadParked()
	if err != nil {
		return err
	}
	for id := range before {
		if s.parked[id] || !s.owns(id) {
			continue
		}
		if err := s.catchUp(id); err != nil {
			return err
		}
	}
	return s.retryDeadLetters(list)
}

// owns reports whether the stream lives in this worker's partition.
func (s *session) owns(streamID string) bool {
	if _, ok := s.cursors[streamID]; ok {
		return true
	}
	if st, ok := s.r.events.(*Store); ok {
		if e, ok, _ := st.Entry(s.ctx, streamID); ok {
			return e.Partition == s.p.id
		}
	}
	return false
}

func (s *session) catchUp(streamID string) error {
	ctx := s.ctx
	found, err := s.r.cfg.Checkpoints.Cursors(ctx, s.r.cfg.Projection.Name(), []string{streamID})
	if err != nil {
		return fmt.Errorf("kafkastore: cursor of %s: %w", streamID, err)
	}
	s.cursors[streamID] = found[streamID]
	var batch []unit
	flush := func() error {
		_, err := s.applyRun(ctx, batch)
		batch = batch[:0]
		return err
	}
	expect := found[streamID]
	for e, err := range s.r.events.ReadStream(ctx, streamID, found[streamID]) {
		if err != nil {
			return fmt.Errorf("kafkastore: resume %s: %w", streamID, err)
		}
		if s.parked[streamID] {
			break // parked again while resuming
		}
		if e.Sequence != expect+1 {
			gap := &framework.GapError{StreamID: streamID, Cursor: expect, Got: e.Sequence, EventID: e.EventID}
			if err := flush(); err != nil {
				return err
			}
			return s.park(ctx, e, nil, framework.ParkGap, gap, 0)
		}
		expect = e.Sequence
		batch = append(batch, unit{ev: e, idx: -1})
		if len(batch) >= s.r.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	err = flush()
	s.r.metrics.applied.Add(ctx, s.applied)
	s.applied = 0
	if err != nil {
		return err
	}
	s.r.cfg.Logger.Info("resumed parked stream", "stream", streamID, "cursor", s.cursors[streamID])
	return s.flush()
}
