package kafkastore_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

var payload = []byte(`{"malo":"51238696788","day":"2026-03-29","unit":"Wh","values":[1200,1180,1175,1190,1201,1188,1179,1203]}`)

// BenchmarkAppend measures Append (events/s) beside a plain franz-go
// ProduceSync of the same records with the same producer settings, in the
// same run, for 1 and 100 events per call.
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench Append -benchtime 2000x -count 5 ./kafkastore
func BenchmarkAppend(b *testing.B) {
	s, env := newStore(b, kafkastore.Config{Partitions: 3})
	raw := env.Client(b, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(s.Config().Topic))
	ctx := context.Background()
	for _, perCall := range []int{1, 100} {
		events := make([]framework.EventData, perCall)
		for i := range events {
			events[i] = framework.EventData{Type: "ValuesReceived", SchemaVersion: 1, Data: payload}
		}
		b.Run(fmt.Sprintf("events=%d", perCall), func(b *testing.B) {
			var store, plain time.Duration
			i := 0
			for b.Loop() {
				i++
				id := fmt.Sprintf("process/bench/%d-%d", perCall, i%200)
				start := time.Now()
				if _, err := s.Append(ctx, id, framework.AnyVersion, events); err != nil {
					b.Fatal(err)
				}
				store += time.Since(start)
				records := make([]*kgo.Record, perCall)
				for j := range records {
					records[j] = &kgo.Record{Key: []byte(id), Value: payload}
				}
				start = time.Now()
				if err := raw.ProduceSync(ctx, records...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				plain += time.Since(start)
			}
			n := float64(perCall * b.N)
			b.ReportMetric(n/store.Seconds(), "append-events/s")
			b.ReportMetric(n/plain.Seconds(), "produce-events/s")
			b.ReportMetric(plain.Seconds()/store.Seconds(), "append/produce-speed")
		})
	}
}

// BenchmarkReadStream reads a 100,000-event stream (interleaved with a
// second stream in the same partition) through ReadStream, beside a plain
// franz-go consumer reading the same partition range without decoding, and
// reports events/s of both, their ratio, and ReadStream's peak heap.
//
//	go test -run '^$' -bench ReadStream -benchtime 3x -count 5 ./kafkastore
func BenchmarkReadStream(b *testing.B) {
	const n = 100_000
	s, env := newStore(b, kafkastore.Config{Partitions: 1})
	ctx := context.Background()
	batch := make([]framework.EventData, 1000)
	for i := range batch {
		batch[i] = framework.EventData{Type: "ValuesReceived", Data: payload}
	}
	for range n / len(batch) {
		if _, err := s.Append(ctx, "process/bench/long", framework.AnyVersion, batch); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Append(ctx, "process/bench/other", framework.AnyVersion, batch[:100]); err != nil {
			b.Fatal(err)
		}
	}
	entry, _, err := s.Entry(ctx, "process/bench/long")
	if err != nil {
		b.Fatal(err)
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }

	var read, plain time.Duration
	var peak uint64
	for b.Loop() {
		runtime.GC()
		base := heap()
		start := time.Now()
		count := 0
		for _, err := range s.ReadStream(ctx, "process/bench/long", 0) {
			if err != nil {
				b.Fatal(err)
			}
			count++
			if count%1000 == 0 {
				if h := heap(); h > base {
					peak = max(peak, h-base)
				}
			}
		}
		read += time.Since(start)
		if count != n {
			b.Fatalf("read %d events, want %d", count, n)
		}

		start = time.Now()
		cl := env.Client(b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.Config().Topic: {0: kgo.NewOffset().At(entry.FirstOffset)}}),
			kgo.FetchMaxBytes(256<<10), kgo.FetchMaxPartitionBytes(256<<10))
		seen := 0
		for done := false; !done; {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				if r.Offset > entry.HeadOffset {
					done = true
					return
				}
				if string(r.Key) == "process/bench/long" {
					seen++
				}
				done = done || r.Offset == entry.HeadOffset
			})
		}
		cl.Close()
		plain += time.Since(start)
		if seen != n {
			b.Fatalf("plain consumer saw %d, want %d", seen, n)
		}
	}
	events := float64(n * b.N)
	b.ReportMetric(events/read.Seconds(), "readstream-events/s")
	b.ReportMetric(events/plain.Seconds(), "plain-events/s")
	b.ReportMetric(plain.Seconds()/read.Seconds(), "readstream/plain-speed")
	b.ReportMetric(float64(peak), "peak-heap-B")
}
