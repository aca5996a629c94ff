// Package kafkaio holds the Kafka plumbing the event store (kafkastore) and
// the runner (kafkarunner) share: offset listing with retries, reads of a
// partition range, and the trace-context carrier over record headers.
package kafkaio

import "github.com/twmb/franz-go/pkg/kgo"

// HeaderCarrier adapts record headers to the OpenTelemetry propagation
// carrier, for the W3C trace context.
type HeaderCarrier struct{ R *kgo.Record }

func (c HeaderCarrier) Get(key string) string {
	for _, h := range c.R.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c HeaderCarrier) Set(key, value string) {
	for i, h := range c.R.Headers {
		if h.Key == key {
			c.R.Headers[i].Value = []byte(value)
			return
		}
	}
	c.R.Headers = append(c.R.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (c HeaderCarrier) Keys() []string {
	keys := make([]string, len(c.R.Headers))
	for i, h := range c.R.Headers {
		keys[i] = h.Key
	}
	return keys
}
