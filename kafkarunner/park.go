package kafkarunner

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

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
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
	p := controlplane.ParkedStream{
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
	valid := framework.ValidateStreamID(id) == nil
	if !valid {
		id = fmt.Sprintf("%s%s/%d/%d", malformedPrefix, rec.Topic, rec.Partition, rec.Offset)
	}
	p := controlplane.ParkedStream{
		StreamID: id, Reason: controlplane.ParkMalformed, ParkedAt: time.Now().UTC(),
		Error:    fmt.Sprintf("the record at %s/%d offset %d does not decode into an event: %v", rec.Topic, rec.Partition, rec.Offset, cause),
		Position: &framework.Position{Partition: rec.Partition, Offset: rec.Offset},
	}
	if seq, err := strconv.ParseUint(headerValue(rec, kafkastore.HeaderSequence), 10, 64); err == nil {
		p.Sequence = seq
	}
	if valid && s.holds(id, rec.Offset) {
		// Its stream is parked already, at an earlier record: parking it
		// again would lose what was held between the two. The record is
		// held like the others; the resume passes over it.
		s.r.metrics.held.Add(ctx, 1)
		s.r.cfg.Logger.Warn("a malformed record of a parked stream is held; its resume passes over it", "stream", id,
			"partition", rec.Partition, "offset", rec.Offset, "err", cause)
		return s.heldDeadLetter(ctx, &p, rec)
	}
	return s.parkStream(ctx, p, rec)
}

// misplaced reports whether rec sits on a partition other than its key's
// home (the murmur2 partition of the key over the topic's partitions).
func (s *session) misplaced(rec *kgo.Record) bool {
	n := s.r.partitions
	return n > 0 && rec.Partition < n && kafkastore.PartitionFor(string(rec.Key), n) != rec.Partition &&
		framework.ValidateStreamID(string(rec.Key)) == nil
}

// parkMisplaced parks a record found off its stream's home partition under
// a pseudo-stream of its own ("misplaced/<partition>/<stream>"), whether or
// not it decodes: the record is never applied here, and the stream goes on
// in its home partition (where the events missing there show as a gap).
// Later records of the stream in this partition are held by the same
// entry and dead-lettered.
func (s *session) parkMisplaced(ctx context.Context, rec *kgo.Record, e framework.Event, decodeErr error) error {
	s.r.metrics.misplaced.Add(ctx, 1)
	stream := string(rec.Key)
	id := fmt.Sprintf("%s%d/%s", misplacedPrefix, rec.Partition, stream)
	home := kafkastore.PartitionFor(stream, s.r.partitions)
	p := controlplane.ParkedStream{
		StreamID: id, Sequence: e.Sequence, EventID: e.EventID, Type: e.Type, Reason: controlplane.ParkMisplaced,
		ParkedAt: time.Now().UTC(), Position: &framework.Position{Partition: rec.Partition, Offset: rec.Offset},
		Error: fmt.Sprintf("stream %s lives in partition %d (murmur2 of its key over %d partitions), but a record of it is in partition %d at offset %d: written by a producer with another partitioner (Sarama's default is FNV-1a, kafka-go's round robin); it is never applied here",
			stream, home, s.r.partitions, rec.Partition, rec.Offset),
	}
	if decodeErr != nil {
		p.Error += fmt.Sprintf("; it does not decode either: %v", decodeErr)
		if seq, err := strconv.ParseUint(headerValue(rec, kafkastore.HeaderSequence), 10, 64); err == nil {
			p.Sequence = seq
		}
	}
	if _, ok := s.parked[id]; ok {
		s.r.metrics.held.Add(ctx, 1)
		s.r.cfg.Logger.Error("misplaced record held", "stream", stream, "sequence", p.Sequence, "partition", rec.Partition, "offset", rec.Offset, "home", home)
		return s.heldDeadLetter(ctx, &p, rec)
	}
	return s.parkStream(ctx, p, rec)
}

// heldDeadLetter writes the dead letter of a record held behind an earlier
// park (no park record of its own tracks it), after checking that this
// worker still owns the partition: a zombie publishes nothing.
func (s *session) heldDeadLetter(ctx context.Context, p *controlplane.ParkedStream, rec *kgo.Record) error {
	if err := s.checkState(); err != nil {
		return err
	}
	s.deadLetter(ctx, p, rec)
	return nil
}

// holds reports whether the record at offset off of stream is held: its
// stream is parked at a record of this partition at or before it.
func (s *session) holds(stream string, off int64) bool {
	from, ok := s.parked[stream]
	return ok && off >= from
}

// parkStream records the parked stream first, with the session's fence (a
// replica that lost the partition is refused here and publishes nothing),
// then writes the dead letter: a copy of the record, or a reference to it
// when the copy cannot be written, or nothing yet when the dead-letter
// topic cannot be reached (the record says "pending" and the partition's
// worker retries). A dead letter that cannot be written never stops the
// stream from being parked, nor the partition.
func (s *session) parkStream(ctx context.Context, p controlplane.ParkedStream, rec *kgo.Record) error {
	name := s.r.cfg.Projection.Name()
	if rec != nil {
		p.DeadLetter = controlplane.DeadLetterPending
	}
	rs := s.resuming[p.StreamID]
	if rs != nil && !rs.reparked {
		p.Resolving = rs.partial(p) // what the resume did is recorded with the park
		// Events of the stream before the new parked record may not be
		// applied yet (waiting for a missing event, or after the failed
		// one in the batch): the next resume reads again from where this
		// one started; what was applied is skipped as redelivered.
		if p.Position != nil && p.Position.Partition == s.p.id && rs.from < p.Position.Offset {
			from := rs.from
			p.HeldFrom = &from
		}
	}
	if err := s.r.cfg.Parked.Park(ctx, name, p); err != nil {
		return fmt.Errorf("kafkarunner: park stream %s: %w", p.StreamID, err)
	}
	if from, ok := p.HoldsFrom(); ok && p.Position.Partition == s.p.id {
		s.parked[p.StreamID] = from
	} else {
		s.parked[p.StreamID] = 0
	}
	s.p.parkedNow.Store(int64(len(s.parked)))
	if rs != nil {
		rs.reparked = true
	}
	p.Resolving = nil
	s.r.metrics.parked.Add(ctx, 1)
	trace.SpanFromContext(ctx).AddEvent("stream parked", trace.WithAttributes(
		attribute.String("projector.stream_id", p.StreamID), attribute.Int64("projector.sequence", int64(p.Sequence)),
		attribute.String("projector.park_reason", p.Reason), attribute.String("error.message", p.Error)))
	s.r.setLastError(fmt.Errorf("stream %s parked at sequence %d (%s): %s", p.StreamID, p.Sequence, p.Reason, p.Error))
	s.r.cfg.Logger.Error("stream parked", "stream", p.StreamID, "sequence", p.Sequence, "reason", p.Reason, "err", p.Error, "partition", s.p.id)
	s.r.onParked(ctx, p)
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
func (s *session) recordDeadLetter(ctx context.Context, p controlplane.ParkedStream) error {
	if _, err := s.r.cfg.Parked.UpdateParked(ctx, s.r.cfg.Projection.Name(), p); err != nil {
		if fatal(err) {
			return fmt.Errorf("kafkarunner: record the dead letter of %s: %w", p.StreamID, err)
		}
		s.r.cfg.Logger.Warn("cannot record the dead letter of a parked stream; it is retried", "stream", p.StreamID, "err", err)
	}
	return nil
}

// deadLetter publishes the parked event to the dead-letter topic and sets
// p.DeadLetter to what it managed: a copy; a reference when the copy is too
// large; nothing yet ("pending") when the topic cannot be reached.
func (s *session) deadLetter(ctx context.Context, p *controlplane.ParkedStream, rec *kgo.Record) {
	if s.r.deadLetterDown() {
		p.DeadLetter, p.DeadLetterError = controlplane.DeadLetterPending, "the dead-letter topic failed moments ago; retried later"
		return
	}
	headers := append(append([]kgo.RecordHeader(nil), rec.Headers...), s.dlqHeaders(p, rec.Topic)...)
	cp := &kgo.Record{Topic: s.r.cfg.DeadLetterTopic, Key: rec.Key, Value: rec.Value, Headers: headers}
	copyErr := s.produce(ctx, cp)
	switch {
	case copyErr == nil:
		p.DeadLetter, p.DeadLetterError = controlplane.DeadLetterCopied, ""
	case errors.Is(copyErr, kerr.MessageTooLarge) || errors.Is(copyErr, kerr.RecordListTooLarge):
		s.r.cfg.Logger.Warn("a parked event is too large for the dead-letter topic; writing a reference instead", "stream", p.StreamID,
			"topic", s.r.cfg.DeadLetterTopic, "bytes", len(rec.Value), "err", copyErr)
		s.deadLetterReference(ctx, p, rec.Topic, rec.Key, copyErr)
	default:
		// The topic cannot be reached: do not hold the partition up
		// with a second attempt; the worker retries a reference later.
		p.DeadLetter, p.DeadLetterError = controlplane.DeadLetterPending, truncate(copyErr.Error(), maxDLQErrorBytes)
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
func (s *session) deadLetterReference(ctx context.Context, p *controlplane.ParkedStream, topic string, key []byte, why error) {
	headers := append(s.dlqHeaders(p, topic), kgo.RecordHeader{Key: HeaderDLQReference, Value: []byte(truncate(why.Error(), maxDLQErrorBytes))})
	ref := &kgo.Record{Topic: s.r.cfg.DeadLetterTopic, Key: key, Headers: headers}
	if err := s.produce(ctx, ref); err != nil {
		s.r.markDeadLetterDown()
		p.DeadLetter = controlplane.DeadLetterPending
		p.DeadLetterError = truncate(fmt.Sprintf("copy: %v; reference: %v", why, err), maxDLQErrorBytes)
		s.r.cfg.Logger.Error("cannot write the dead letter of a parked stream; the stream is parked and the dead letter retried", "stream", p.StreamID, "err", err)
		return
	}
	p.DeadLetter = controlplane.DeadLetterReference
	p.DeadLetterError = truncate(why.Error(), maxDLQErrorBytes)
}

func (s *session) dlqHeaders(p *controlplane.ParkedStream, topic string) []kgo.RecordHeader {
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
func (s *session) retryDeadLetters(list []controlplane.ParkedStream) error {
	for _, p := range list {
		if p.DeadLetter != controlplane.DeadLetterPending || p.Position == nil || p.Position.Partition != s.p.id || s.r.deadLetterDown() {
			continue
		}
		if err := s.checkState(); err != nil { // no dead letters from a replica that lost the partition
			return err
		}
		s.deadLetterReference(s.ctx, &p, s.r.cfg.Topic, []byte(p.StreamID), fmt.Errorf("the copy was not written when the stream was parked: %s", p.DeadLetterError))
		if p.DeadLetter == controlplane.DeadLetterPending {
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

func (s *session) loadParked() ([]controlplane.ParkedStream, error) {
	s.lastParked = time.Now()
	parked, err := s.r.cfg.Parked.Parked(s.ctx, s.r.cfg.Projection.Name())
	if err != nil {
		return nil, fmt.Errorf("kafkarunner: parked streams of %s: %w", s.r.cfg.Projection.Name(), err)
	}
	now := make(map[string]int64, len(parked))
	for _, p := range parked {
		switch {
		case p.Position != nil && p.Position.Partition == s.p.id:
			now[p.StreamID], _ = p.HoldsFrom()
		case p.Position == nil && s.resumesHere(p):
			now[p.StreamID] = 0 // parked by an older version: hold all
		}
	}
	s.parked = now
	s.p.parkedNow.Store(int64(len(s.parked)))
	return parked, nil
}

// resumeResolved carries out the resolutions requested for streams parked
// in this partition (see resume), and retries pending dead letters.
func (s *session) resumeResolved() error {
	list, err := s.loadParked()
	if err != nil {
		return err
	}
	var todo []controlplane.ParkedStream
	for _, p := range list {
		if p.Resolving != nil && s.resumesHere(p) {
			todo = append(todo, p)
		}
	}
	if len(todo) > 0 {
		if err := s.resume(todo); err != nil {
			return err
		}
	}
	return s.retryDeadLetters(list)
}

// resumesHere reports whether this partition's worker resumes p: the
// partition of its parked record, or (a record from an older version
// without a position) the stream's home partition.
func (s *session) resumesHere(p controlplane.ParkedStream) bool {
	if p.Position != nil {
		return p.Position.Partition == s.p.id
	}
	return s.r.partitions > 0 && kafkastore.PartitionFor(p.StreamID, s.r.partitions) == s.p.id
}
