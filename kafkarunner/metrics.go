package kafkarunner

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// durationBuckets are the histogram boundaries of durations, in seconds:
// OpenTelemetry's messaging semantic conventions recommend them.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// runnerMetrics are the runner's OpenTelemetry instruments. Every one
// carries the projection and group as attributes.
type runnerMetrics struct {
	applied, skipped, parked, held, unverified boundCounter
	misplaced, passedOver, uncataloged         boundCounter
	rebalances, partitionRestarts              boundCounter
	applyLatency, checkpointLatency            boundHistogram
	consumed                                   consumedCounter
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
		switch name {
		case "projector.rebalances":
			unit = "{rebalance}"
		case "projector.partition.restarts":
			unit = "{restart}"
		case "projector.streams.uncataloged":
			unit = "{stream}"
		}
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return boundCounter{c, attrs, new(atomic.Int64)}
	}
	hist := func(name, desc string) boundHistogram {
		// OpenTelemetry's recommended boundaries for messaging durations:
		// the SDK's default ones (0, 5, 10, 25 ... s) put every apply in
		// the first bucket.
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return boundHistogram{h, attrs}
	}
	rm := &runnerMetrics{
		applied: counter("projector.events.applied", "Events applied to the projection."),
		skipped: counter("projector.events.skipped", "Duplicate events skipped: at or below their stream's cursor."),
		parked:  counter("projector.events.parked", "Events at which a stream was parked."),
		held:    counter("projector.events.held", "Events held because their stream is parked."),
		unverified: counter("projector.events.unverified",
			"Duplicates skipped without verifying their event ID against the applied event (no head offset or event ID known for the stream)."),
		misplaced: counter("projector.events.misplaced",
			"Records on a partition other than their stream's home (the murmur2 partition of the key): never applied, dead-lettered, their stream parked."),
		passedOver: counter("projector.events.passed_over",
			"Records a resume of a parked stream passed over without applying them: the skipped event, malformed and misplaced records (all dead-lettered)."),
		uncataloged: counter("projector.streams.uncataloged",
			"Streams the runner applied that the stream catalog lacks (written by another producer): run `projectorctl catalog rebuild` for ListStreams to list them."),
		partitionRestarts: counter("projector.partition.restarts", "Partition worker sessions that failed and were restarted (or stopped: fenced, state lost)."),
		// OpenTelemetry's messaging semantic conventions name it.
		applyLatency:      hist("messaging.process.duration", "Time to process (apply) one run of events of a partition."),
		checkpointLatency: hist("projector.checkpoint.duration", "Time to store a batch of cursors."),
		rebalances:        counter("projector.rebalances", "Partition assignments, revocations and losses."),
	}
	// Every counter's series exists from the start, at 0: an alert on
	// increase() sees the first parked stream too.
	for _, c := range []boundCounter{rm.applied, rm.skipped, rm.parked, rm.held, rm.unverified, rm.misplaced, rm.passedOver,
		rm.uncataloged, rm.partitionRestarts, rm.rebalances} {
		if c.c != nil {
			c.c.Add(context.Background(), 0, c.attrs)
		}
	}
	consumed, err := newConsumedCounter(m, r, kvs)
	errs = append(errs, err)
	rm.consumed = consumed
	errs = append(errs, registerLagGauges(m, r, kvs), registerPartitionGauge(m, r, kvs), registerParkedGauge(m, r, kvs),
		registerTopicPartitionsGauge(m, r, kvs))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("kafkarunner: metrics: %w", err)
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
	// Unverified counts the skipped duplicates whose event ID could not
	// be verified against the event applied at their sequence.
	Unverified int64
	// Misplaced counts records found off their stream's home partition.
	Misplaced int64
	// PassedOver counts records a resume passed over: a skipped event,
	// malformed and misplaced records held behind a parked event.
	PassedOver int64
	// Uncataloged counts streams applied that the stream catalog lacks.
	Uncataloged int64
}

// Stats returns the runner's counts so far.
func (r *Runner) Stats() RunnerStats {
	m := r.metrics
	return RunnerStats{Applied: m.applied.total.Load(), Skipped: m.skipped.total.Load(), Parked: m.parked.total.Load(),
		Held: m.held.total.Load(), Unverified: m.unverified.total.Load(), Misplaced: m.misplaced.total.Load(), PassedOver: m.passedOver.total.Load(),
		Uncataloged: m.uncataloged.total.Load()}
}

// registerPartitionGauge reports each assigned partition's state: 1 for
// the state it is in (projector.partition.state="running", "fenced",
// "state-lost", ...). Alert on any state but running that lasts.
func registerPartitionGauge(m metric.Meter, r *Runner, attrs []attribute.KeyValue) error {
	g, err := m.Int64ObservableGauge("projector.partitions",
		metric.WithDescription("Assigned partitions by state (1 per partition, labelled with its state)."), metric.WithUnit("{partition}"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range r.Partitions() {
			o.ObserveInt64(g, 1, metric.WithAttributes(append(attrs,
				attribute.String("messaging.destination.partition.id", strconv.Itoa(int(p.Partition))),
				attribute.String("projector.partition.state", p.State))...))
		}
		return nil
	}, g)
	return err
}

type boundHistogram struct {
	h     metric.Float64Histogram
	attrs metric.MeasurementOption
}

func (b boundHistogram) Record(ctx context.Context, v float64) { b.h.Record(ctx, v, b.attrs) }

// registerParkedGauge reports the streams parked now in each assigned
// partition: summed over the replicas, the projection's parked streams.
// Alert on it above 0 (a stream waits for an admin).
func registerParkedGauge(m metric.Meter, r *Runner, attrs []attribute.KeyValue) error {
	g, err := m.Int64ObservableGauge("projector.streams.parked",
		metric.WithDescription("Streams parked now, per assigned partition: each waits for an admin's retry or skip (projectorctl parked list)."),
		metric.WithUnit("{stream}"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r.partsMu.Lock()
		parts := slices.Collect(maps.Values(r.parts))
		r.partsMu.Unlock()
		for _, p := range parts {
			o.ObserveInt64(g, p.parkedNow.Load(), metric.WithAttributes(append(attrs,
				attribute.String("messaging.destination.partition.id", strconv.Itoa(int(p.id))))...))
		}
		return nil
	}, g)
	return err
}
