package kafkarunner

import (
	"context"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// PartitionLag is how far a replica's worker is behind its partition.
type PartitionLag struct {
	Partition int32
	// Records between the last processed offset and the partition's end
	// at the last fetch.
	Records int64
	// Seconds since the last processed record was written, while Records
	// is above 0; 0 when caught up.
	Seconds float64
}

// Lag returns the lag of every partition assigned to this replica, also of
// partitions whose worker is not working (they fall behind).
func (r *Runner) Lag() []PartitionLag {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	out := make([]PartitionLag, 0, len(r.parts))
	for id, p := range r.parts {
		hw, pos := p.highWatermark.Load(), p.position.Load()
		l := PartitionLag{Partition: id}
		if hw > pos {
			l.Records = hw - pos
			if ts := p.lastTimestamp.Load(); ts > 0 {
				l.Seconds = time.Since(time.Unix(0, ts)).Seconds()
			}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b PartitionLag) int { return int(a.Partition - b.Partition) })
	return out
}

// registerLagGauges reports Lag through two observable gauges.
func registerLagGauges(m metric.Meter, r *Runner, attrs []attribute.KeyValue) error {
	records, err := m.Int64ObservableGauge("projector.lag.records",
		metric.WithDescription("Records between the last processed offset and the end of the partition."), metric.WithUnit("{record}"))
	if err != nil {
		return err
	}
	seconds, err := m.Float64ObservableGauge("projector.lag.seconds",
		metric.WithDescription("Age of the last processed record while the partition is behind; 0 when caught up."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, l := range r.Lag() {
			opt := metric.WithAttributes(append(attrs, attribute.String("messaging.destination.partition.id", strconv.Itoa(int(l.Partition))))...)
			o.ObserveInt64(records, l.Records, opt)
			o.ObserveFloat64(seconds, l.Seconds, opt)
		}
		return nil
	}, records, seconds)
	return err
}
