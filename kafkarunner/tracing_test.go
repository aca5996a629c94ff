package kafkarunner_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
)

// TestOneTraceFromAppendToApply appends an event inside a "command" span
// and follows it through the consumer: the runner's apply span belongs to
// the same trace, under kotel's publish and receive spans. The metrics
// count exactly the known workload.
func TestOneTraceFromAppendToApply(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	env := newFixture(t, 2)
	store, err := newGuarded(ctxFor(t), kafkastore.Config{Seeds: env.env.Seeds, Topic: env.store.Config().Topic, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, command := tp.Tracer("test").Start(ctxFor(t), "command RecordMeterValues")
	if _, err := store.Append(ctx, "process/t/traced", framework.NoStream, []framework.EventData{{EventID: "ev-traced", Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	command.End()
	want := env.produce(t, 10, 3, "process/t/")
	want["process/t/traced"] = 1
	// A poison event and a duplicate delivery, for the parked and skipped
	// counters.
	if _, err := store.Append(ctxFor(t), "process/t/poisoned", framework.NoStream, []framework.EventData{{Type: "Poison"}}); err != nil {
		t.Fatal(err)
	}

	p := env.counter(t)
	rep := env.start(t, p, func(c *kafkarunner.Config) {
		c.TracerProvider, c.MeterProvider = tp, mp
	})
	env.waitCounts(t, p, want, time.Minute)
	waitParked(t, rep, 1)
	// The counters are added once the batch's script has answered: the
	// read model can be complete a moment before them (a busy machine
	// widens that moment).
	var rm metricdata.ResourceMetrics
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rm = metricdata.ResourceMetrics{}
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		if applied := sumOf(rm, "projector.events.applied"); applied >= 31 || time.Now().After(deadline) {
			break
		}
	}
	rep.stop(t)

	trace := command.SpanContext().TraceID()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		if s.SpanContext().TraceID() == trace {
			byName[s.Name()] = s
		}
	}
	topic := env.store.Config().Topic
	appendSpan, publish, receive, apply := byName["append "+topic], byName[topic+" publish"], byName[topic+" receive"], byName["apply "+env.name]
	if appendSpan == nil || publish == nil || receive == nil || apply == nil {
		names := []string{}
		for n := range byName {
			names = append(names, n)
		}
		t.Fatalf("spans of the command's trace: %v; want append, publish, receive and apply", names)
	}
	chain := []struct {
		child, parent sdktrace.ReadOnlySpan
	}{{appendSpan, nil}, {publish, appendSpan}, {receive, publish}, {apply, receive}}
	for _, c := range chain {
		parent := command.SpanContext().SpanID()
		if c.parent != nil {
			parent = c.parent.SpanContext().SpanID()
		}
		if c.child.Parent().SpanID() != parent {
			t.Errorf("%s's parent is %s, want %s", c.child.Name(), c.child.Parent().SpanID(), parent)
		}
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range apply.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["projector.stream_id"].AsString() != "process/t/traced" || attrs["projector.sequence"].AsInt64() != 1 ||
		attrs["projector.event_id"].AsString() != "ev-traced" || attrs["projector.projection"].AsString() != env.name ||
		attrs["messaging.destination.name"].AsString() != topic {
		t.Errorf("apply span attributes = %v", attrs)
	}
	// The batch span links to the record's trace.
	linked := false
	for _, s := range spans.Ended() {
		for _, l := range s.Links() {
			linked = linked || l.SpanContext.TraceID() == trace && s.Name() == "projector.batch "+env.name
		}
	}
	if !linked {
		t.Error("no batch span links to the traced event's trace")
	}
	// The parked event's span records the error.
	var parkedSpan sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "projector.park_reason" {
				parkedSpan = s
			}
		}
	}
	if parkedSpan == nil || parkedSpan.Status().Code.String() != "Error" || len(parkedSpan.Events()) == 0 {
		t.Errorf("no apply span recorded the parked event's error")
	}

	sums := map[string]int64{}
	lagPartitions := 0
	var parkedNow int64 // the gauge of streams parked now
	var latencySeen bool
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					sums[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				if m.Name == "projector.lag.records" {
					lagPartitions += len(d.DataPoints)
				}
				if m.Name == "projector.streams.parked" {
					for _, p := range d.DataPoints {
						parkedNow += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				latencySeen = latencySeen || m.Name == "messaging.process.duration" && len(d.DataPoints) > 0 && d.DataPoints[0].Count > 0
			}
		}
	}
	if sums["projector.events.applied"] != 31 || sums["projector.events.parked"] != 1 || sums["projector.rebalances"] == 0 {
		t.Errorf("counters = %v, want 31 applied, 1 parked, some rebalances", sums)
	}
	// Every record applied or parked was delivered: consumed counts them
	// (and any a restarted partition read again).
	if c := sums["messaging.client.consumed.messages"]; c < 32 {
		t.Errorf("messaging.client.consumed.messages = %d, want at least the 32 records applied or parked", c)
	}
	if parkedNow != 1 {
		t.Errorf("projector.streams.parked = %d, want the one parked stream", parkedNow)
	}
	if !latencySeen {
		t.Error("no apply latency recorded")
	}
	if lagPartitions != 2 {
		t.Errorf("lag reported for %d partitions, want 2", lagPartitions)
	}
}

// sumOf is the sum of the int64 counter name's data points in rm.
func sumOf(rm metricdata.ResourceMetrics, name string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, p := range d.DataPoints {
					n += p.Value
				}
			}
		}
	}
	return n
}
