package kafkarunner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/kafkarunner"
)

// discardExporter takes every span and keeps none: the benchmark measures
// the runner's cost of tracing, not an exporter's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkRunnerTracing consumes the same 500,000 events (2,000 streams, 6
// partitions) with the runner (a trivial projection, cursors in Redis)
// without tracing and with an SDK TracerProvider (spans batched to an
// exporter that drops them): with the SDK's default sampler
// (parentbased_always_on), once with the default EventSpansSampled and once
// with EventSpansOff, and with parentbased_traceidratio 0.1, alternately in
// the same run, each in a new consumer group. The records carry no trace
// context, so the sampler decides at the consumer (kotel's receive span of
// each record is a root). It reports events/s and CPU per event of each
// against tracing off.
//
//	go test -run '^$' -bench RunnerTracing -benchtime 2x -count 3 ./kafkarunner
func BenchmarkRunnerTracing(b *testing.B) {
	store, env, total := appendBenchEvents(b)
	ctx := context.Background()
	red := redisFor(b)
	provider := func(sampler sdktrace.Sampler) trace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discardExporter{}))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}
	alwaysOn := provider(sdktrace.ParentBased(sdktrace.AlwaysSample())) // the SDK's default
	tenth := provider(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))

	modes := []struct {
		name string
		tp   trace.TracerProvider
		ev   kafkarunner.EventSpans
	}{
		{"off", nil, 0},
		{"always-on", alwaysOn, kafkarunner.EventSpansSampled},
		{"always-on-event-spans-off", alwaysOn, kafkarunner.EventSpansOff},
		{"ratio-0.1", tenth, kafkarunner.EventSpansSampled},
	}
	wall := make([]time.Duration, len(modes))
	cpu := make([]time.Duration, len(modes))
	iter := 0
	for b.Loop() {
		iter++
		for i, m := range modes {
			name := fmt.Sprintf("bench-trace-%d-%d-%d", time.Now().UnixNano(), iter, i)
			r, applied := countingRunner(b, red, env.Seeds, store, name, func(c *kafkarunner.Config) {
				c.TracerProvider, c.EventSpans = m.tp, m.ev
			})
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			start, cpu0 := time.Now(), cpuTime()
			go func() { done <- r.Run(rctx) }()
			for applied.Load() < total {
				time.Sleep(time.Millisecond)
			}
			wall[i] += time.Since(start)
			cpu[i] += cpuTime() - cpu0
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	n := float64(total * int64(b.N))
	for i, m := range modes {
		b.ReportMetric(float64(cpu[i].Nanoseconds())/n, m.name+"-cpu-ns/event")
		if i > 0 {
			b.ReportMetric(wall[0].Seconds()/wall[i].Seconds(), m.name+"/off-speed")
			b.ReportMetric(cpu[i].Seconds()/cpu[0].Seconds(), m.name+"/off-cpu")
		}
	}
}
