package kafkarunner

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/framework"
)

// TestEventSpanModes: which events get an apply span of their own under
// each Config.EventSpans, with tracing on and off, and that a failing
// event gets one whatever its record's sampling (unless spans are off).
func TestEventSpanModes(t *testing.T) {
	sc := func(flags trace.TraceFlags) context.Context {
		return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: flags}))
	}
	ev := framework.Event{StreamID: "process/t/1", Sequence: 1, EventID: "e1", Type: "T"}
	units := map[string]unit{
		"sampled record":                 {ev: ev, rec: &kgo.Record{Context: sc(trace.FlagsSampled)}, idx: 0},
		"unsampled record":               {ev: ev, rec: &kgo.Record{Context: sc(0)}, idx: 1},
		"record without a trace context": {ev: ev, rec: &kgo.Record{}, idx: 2},
		"event read from the store":      {ev: ev, idx: -1},
	}
	for _, tc := range []struct {
		name    string
		tracing bool
		mode    EventSpans
		spans   map[string]bool // units that get a span
		failing bool            // a failing unit gets one
	}{
		{"sampled", true, EventSpansSampled, map[string]bool{"sampled record": true}, true},
		{"always", true, EventSpansAlways, map[string]bool{"sampled record": true, "unsampled record": true, "record without a trace context": true, "event read from the store": true}, true},
		{"off", true, EventSpansOff, nil, false},
		{"no tracing", false, EventSpansAlways, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			r := &Runner{tracing: tc.tracing, tracer: tp.Tracer("test"), propagator: propagation.TraceContext{},
				cfg: Config{EventSpans: tc.mode, Topic: "t", Group: "g", Projection: framework.ProjectionFunc("p", nil)}}
			s := &session{r: r, p: &partition{r: r, id: 3}, ctx: context.Background()}
			for name, u := range units {
				if got := s.eventSpan(s.ctx, u) != noSpan; got != tc.spans[name] {
					t.Errorf("%s: own span %v, want %v", name, got, tc.spans[name])
				}
				u.span = noSpan
				if got := s.failingSpan(s.ctx, &u) != noSpan; got != tc.failing {
					t.Errorf("%s failing: own span %v, want %v", name, got, tc.failing)
				}
			}
			if _, span := s.batchSpan(nil); (span != noSpan) != tc.tracing {
				t.Errorf("batch span %v with tracing %v", span, tc.tracing)
			}
		})
	}
}
