package kafkarunner

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registerTopicPartitionsGauge reports the event topic's partition count,
// as the runner read it from the topic's metadata when it started: beside
// projector.partitions (the partitions each replica runs), an alert sees
// partitions that no replica runs (max of this minus the sum of the
// running ones above 0).
//
// It is reported once the runner started (State is no longer ""): the
// count is written before the first state, and the state's atomic store
// orders that write before this read. A topic whose count is unknown (the
// metadata did not answer) reports nothing.
func registerTopicPartitionsGauge(m metric.Meter, r *Runner, attrs []attribute.KeyValue) error {
	g, err := m.Int64ObservableGauge("projector.topic.partitions",
		metric.WithDescription("Partitions of the event topic, from its metadata when the runner started."),
		metric.WithUnit("{partition}"))
	if err != nil {
		return err
	}
	opt := metric.WithAttributes(append(append([]attribute.KeyValue(nil), attrs...),
		attribute.String("messaging.destination.name", r.cfg.Topic))...)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if !r.topicKnown.Load() { // r.partitions is written before it is set
			return nil
		}
		if n := r.partitions; n > 0 {
			o.ObserveInt64(g, int64(n), opt)
		}
		return nil
	}, g)
	return err
}
