package kafkarunner

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/internal/kafkaio"
)

// noSpan stands for an event without an apply span of its own: every
// call on it does nothing.
var noSpan = trace.SpanFromContext(context.Background())

// eventSpan returns u's apply span as Config.EventSpans says, or noSpan.
func (s *session) eventSpan(ctx context.Context, u unit) trace.Span {
	r := s.r
	if !r.tracing {
		return noSpan
	}
	switch r.cfg.EventSpans {
	case EventSpansOff:
		return noSpan
	case EventSpansAlways:
		return s.startApplySpan(ctx, u)
	}
	if u.rec == nil || u.rec.Context == nil || !trace.SpanContextFromContext(u.rec.Context).IsSampled() {
		return noSpan
	}
	return s.startApplySpan(ctx, u)
}

// failingSpan returns the span to record u's failure on: its apply span,
// started now if it had none (unless event spans are off).
func (s *session) failingSpan(ctx context.Context, u *unit) trace.Span {
	if u.span == noSpan && s.r.tracing && s.r.cfg.EventSpans != EventSpansOff {
		u.span = s.startApplySpan(ctx, *u)
	}
	return u.span
}

// spanContext is ctx with u's apply span, or ctx (its batch span) when u
// has none.
func spanContext(ctx context.Context, u unit) context.Context {
	if u.span == noSpan || u.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, u.span)
}

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

// batchSpan starts the span of one polled batch of the partition (the
// messaging conventions' "process" span of a batch), linked to the traces
// of its records (the first maxBatchLinks). Without tracing it is noSpan
// and costs nothing.
func (s *session) batchSpan(recs []*kgo.Record) (context.Context, trace.Span) {
	r := s.r
	if !r.tracing {
		return s.ctx, noSpan
	}
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
	return r.tracer.Start(s.ctx, "projector.batch "+r.cfg.Projection.Name(), trace.WithLinks(links...),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.destination.name", r.cfg.Topic),
			attribute.String("messaging.consumer.group.name", r.cfg.Group),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(int(s.p.id))),
			attribute.Int("messaging.batch.message_count", len(recs)),
			attribute.String("projector.projection", r.cfg.Projection.Name()),
		))
}
