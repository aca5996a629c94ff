package kafkarunner

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// projector.topic.partitions reports the topic's partition count once the
// runner runs, labelled with the topic, and nothing before.
func TestTopicPartitionsGauge(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	r := &Runner{cfg: Config{Projection: namedProjection("billing"), Group: "billing", Topic: "mabis.process-events"}, parts: map[int32]*partition{}}
	if _, err := newRunnerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), r); err != nil {
		t.Fatal(err)
	}
	observe := func() []metricdata.DataPoint[int64] {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == "projector.topic.partitions" {
					return m.Data.(metricdata.Gauge[int64]).DataPoints
				}
			}
		}
		return nil
	}
	if dp := observe(); len(dp) != 0 {
		t.Errorf("reported before the runner ran: %v", dp)
	}
	r.partitions = 6 // as ensureDeadLetterTopic sets it, then says it is known
	r.topicKnown.Store(true)
	dp := observe()
	if len(dp) != 1 || dp[0].Value != 6 {
		t.Fatalf("projector.topic.partitions = %v, want one point of 6", dp)
	}
	for k, want := range map[string]string{"messaging.destination.name": "mabis.process-events", "projector.projection": "billing", "messaging.consumer.group.name": "billing"} {
		if v, ok := dp[0].Attributes.Value(attribute.Key(k)); !ok || v.AsString() != want {
			t.Errorf("attribute %s = %v, want %q", k, v.AsString(), want)
		}
	}
}
