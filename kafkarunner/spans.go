package kafkarunner

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/internal/kafkaio"
)

// startApplySpan starts the span of one event's apply.
func (s *session) startApplySpan(ctx context.Context, u unit) trace.Span {
	r := s.r
	parent := ctx
	if u.rec != nil && u.rec.Context != nil {
		parent = u.rec.Context
	} else if u.rec != nil {
		parent = r.propagator.Extract(ctx, kafkaio.HeaderCarrier{R: u.rec})
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.destination.name", r.cfg.Topic),
		attribute.String("messaging.consumer.group.name", r.cfg.Group),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(int(s.p.id))),
		attribute.String("projector.projection", r.cfg.Projection.Name()),
		attribute.String("projector.stream_id", u.ev.StreamID),
		attribute.Int64("projector.sequence", int64(u.ev.Sequence)),
		attribute.String("projector.event_id", u.ev.EventID),
		attribute.String("projector.event_type", u.ev.Type),
	}
	if u.rec != nil {
		attrs = append(attrs, attribute.Int64("messaging.kafka.offset", u.rec.Offset))
	}
	_, span := r.tracer.Start(parent, "apply "+r.cfg.Projection.Name(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return span
}
