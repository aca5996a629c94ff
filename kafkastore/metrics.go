package kafkastore

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// runnerMetrics are the runner's OpenTelemetry instruments. Every one
// carries the projection and group as attributes.
type runnerMetrics struct {
	applied, skipped, parked, held, rebalances boundCounter
	applyLatency, checkpointLatency            boundHistogram
}

func newRunnerMetrics(mp metric.MeterProvider, r *Runner) (*runnerMetrics, error) {
	m := mp.Meter("github.com/projector-dev/projector/kafkastore")
	var errs []error
	kvs := []attribute.KeyValue{
		attribute.String("projector.projection", r.cfg.Projection.Name()),
		attribute.String("messaging.consumer.group.name", r.cfg.Group),
	}
	attrs := metric.WithAttributes(kvs...)
	counter := func(name, desc string) boundCounter {
		unit := "{event}"
		if name == "projector.rebalances" {
			unit = "{rebalance}"
		}
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return boundCounter{c, attrs, new(atomic.Int64)}
	}
	hist := func(name, desc string) boundHistogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"))
		errs = append(errs, err)
		return boundHistogram{h, attrs}
	}
	rm := &runnerMetrics{
		applied:           counter("projector.events.applied", "Events applied to the projection."),
		skipped:           counter("projector.events.skipped", "Duplicate events skipped: at or below their stream's cursor."),
		parked:            counter("projector.events.parked", "Events at which a stream was parked."),
		held:              counter("projector.events.held", "Events held because their stream is parked."),
		applyLatency:      hist("projector.apply.duration", "Time to apply one batch of events."),
		checkpointLatency: hist("projector.checkpoint.duration", "Time to store a batch of cursors."),
		rebalances:        counter("projector.rebalances", "Partition assignments, revocations and losses."),
	}
	errs = append(errs, registerLagGauges(m, r, kvs))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("kafkastore: metrics: %w", err)
		}
	}
	return rm, nil
}

// The instruments are used through these wrappers so that every
// measurement carries the runner's attributes.
type boundCounter struct {
	c     metric.Int64Counter
	attrs metric.MeasurementOption
	total *atomic.Int64 // for Stats
}

func (b boundCounter) Add(ctx context.Context, n int64) {
	b.c.Add(ctx, n, b.attrs)
	b.total.Add(n)
}

// RunnerStats counts what a runner did since it started.
type RunnerStats struct {
	Applied int64 // events applied
	Skipped int64 // duplicates skipped by their cursor
	Parked  int64 // events at which a stream was parked
	Held    int64 // events held because their stream is parked
}

// Stats returns the runner's counts so far.
func (r *Runner) Stats() RunnerStats {
	m := r.metrics
	return RunnerStats{Applied: m.applied.total.Load(), Skipped: m.skipped.total.Load(), Parked: m.parked.total.Load(), Held: m.held.total.Load()}
}

type boundHistogram struct {
	h     metric.Float64Histogram
	attrs metric.MeasurementOption
}

func (b boundHistogram) Record(ctx context.Context, v float64) { b.h.Record(ctx, v, b.attrs) }
