package kafkarunner

import (
	"context"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// consumedCounter is OpenTelemetry's messaging.client.consumed.messages:
// the records the poll loop delivered to the runner's partition workers,
// per partition. Records of a partition no longer owned are not counted
// (they are not delivered). Its attribute sets are built once per
// partition, so counting costs no allocation per poll.
type consumedCounter struct {
	c     metric.Int64Counter
	base  []attribute.KeyValue
	mu    *sync.Mutex
	attrs map[int32]metric.MeasurementOption
}

func newConsumedCounter(m metric.Meter, r *Runner, kvs []attribute.KeyValue) (consumedCounter, error) {
	c, err := m.Int64Counter("messaging.client.consumed.messages",
		metric.WithDescription("Records delivered to the runner's partition workers (OpenTelemetry messaging semantic conventions)."),
		metric.WithUnit("{message}"))
	base := append([]attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.name", "poll"),
		attribute.String("messaging.destination.name", r.cfg.Topic),
	}, kvs...)
	return consumedCounter{c: c, base: base, mu: new(sync.Mutex), attrs: map[int32]metric.MeasurementOption{}}, err
}

// Add counts n records delivered from partition p.
func (cc consumedCounter) Add(ctx context.Context, p int32, n int) {
	if cc.c == nil || n == 0 {
		return
	}
	cc.mu.Lock()
	opt, ok := cc.attrs[p]
	if !ok {
		kvs := append(append([]attribute.KeyValue(nil), cc.base...),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(int(p))))
		opt = metric.WithAttributeSet(attribute.NewSet(kvs...))
		cc.attrs[p] = opt
	}
	cc.mu.Unlock()
	cc.c.Add(ctx, int64(n), opt)
}
