package kafkarunner

import (
	"context"
	"slices"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/projector-dev/projector/framework"
)

type namedProjection string

func (n namedProjection) Name() string                               { return string(n) }
func (namedProjection) Apply(context.Context, framework.Event) error { return nil }

// The counters exist at 0 before anything happened (an increase() alert on
// parked events sees the first park), and durations use the messaging
// semantic conventions' buckets, not the SDK's 0, 5, 10 ... seconds.
func TestMetricsExistFromTheStart(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	r := &Runner{cfg: Config{Projection: namedProjection("billing"), Group: "billing"}, parts: map[int32]*partition{}}
	m, err := newRunnerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), r)
	if err != nil {
		t.Fatal(err)
	}
	m.applyLatency.Record(context.Background(), 0.003)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			seen[md.Name] = true
			if h, ok := md.Data.(metricdata.Histogram[float64]); ok && md.Name == "messaging.process.duration" {
				if !slices.Equal(h.DataPoints[0].Bounds, durationBuckets) || h.DataPoints[0].BucketCounts[0] != 1 {
					t.Errorf("apply duration bounds %v counts %v", h.DataPoints[0].Bounds, h.DataPoints[0].BucketCounts)
				}
			}
		}
	}
	for _, name := range []string{"projector.events.parked", "projector.events.held", "projector.events.skipped", "projector.events.applied", "projector.partition.restarts"} {
		if !seen[name] {
			t.Errorf("%s is not reported before it happens", name)
		}
	}
}
