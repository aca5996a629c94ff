package kafkastore_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// heapCounter counts applied events and samples the heap every
// sampleEvery events.
type heapCounter struct {
	applied atomic.Int64
	base    uint64
	peak    uint64
	sample  []metrics.Sample
}

const sampleEvery = 20_000

func (p *heapCounter) Name() string { return "count" }

func (p *heapCounter) Apply(context.Context, framework.Event) error {
	if p.applied.Add(1)%sampleEvery == 0 {
		metrics.Read(p.sample)
		if h := p.sample[0].Value.Uint64(); h > p.base {
			p.peak = max(p.peak, h-p.base)
		}
	}
	return nil
}

// BenchmarkStoreRunOnePass measures ProjectionRunner.RunPrefix over a
// kafkastore topic (12 partitions, 50 events of ~110 bytes per stream) at
// 200, 2,000 and 20,000 streams, in two layouts: interleaved (every
// stream's first event, then every stream's second, ...: each record is of
// another stream than the one before it, the runner's worst case) and
// contiguous (each stream's 50 events one after another, as appends of
// 50 events leave them), beside a plain
// franz-go consumer reading the same topic to its end without decoding, in
// the same run, interleaved. It reports events/s of both, their ratio
// (onepass/plain-speed, 1 = as fast as the plain scan) and the runner's
// peak heap growth. The streams are written by a plain producer with the
// header contract and cataloged by RebuildCatalog, which keeps the setup
// of 20,000 streams short.
//
// It also times one ReadStream of one of the streams (50 events) and
// reports how many records of its partition that read passes over: from
// the stream's first record to the partition's end, whatever the stream's
// own size.
//
// streams=200 also runs the runner stream by stream (one ReadStream per
// stream, the path of a store without [framework.MultiStreamReader]) for
// comparison; it grows with streams × partition size and is left out at
// the larger sizes (2,000 streams took 23 s).
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench StoreRunOnePass -benchtime 3x -count 3 -timeout 30m ./kafkastore
func BenchmarkStoreRunOnePass(b *testing.B) {
	for _, layout := range []string{"interleaved", "contiguous"} {
		for _, streams := range []int{200, 2_000, 20_000} {
			b.Run(fmt.Sprintf("layout=%s/streams=%d", layout, streams), func(b *testing.B) {
				benchStoreRun(b, layout, streams)
			})
		}
	}
}

func benchStoreRun(b *testing.B, layout string, streams int) {
	const perStream = 50
	s, env := newStore(b, kafkastore.Config{Partitions: 12})
	ctx := context.Background()
	topic := s.Config().Topic
	prefix := fmt.Sprintf("process/bench%d/", streams)
	producer := env.Client(b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	headers := func(id string, seq int) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for _, h := range contract(id, seq) {
			hs = append(hs, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		return hs
	}
	var produceErr atomic.Value
	produce := func(i, seq int) {
		id := fmt.Sprintf("%s%d", prefix, i)
		producer.Produce(ctx, &kgo.Record{Key: []byte(id), Value: payload, Headers: headers(id, seq)}, func(_ *kgo.Record, err error) {
			if err != nil {
				produceErr.Store(err)
			}
		})
	}
	if layout == "interleaved" {
		for seq := 1; seq <= perStream; seq++ {
			for i := range streams {
				produce(i, seq)
			}
		}
	} else {
		for i := range streams {
			for seq := 1; seq <= perStream; seq++ {
				produce(i, seq)
			}
		}
	}
	if err := producer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err, _ := produceErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	if _, err := s.RebuildCatalog(ctx); err != nil {
		b.Fatal(err)
	}
	ends, err := kadm.NewClient(producer).ListEndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	total := int64(streams * perStream)
	r, err := framework.NewProjectionRunner(framework.RunnerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	run := func(store framework.EventStore) (time.Duration, uint64) {
		p := &heapCounter{sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
		runtime.GC()
		metrics.Read(p.sample)
		p.base = p.sample[0].Value.Uint64()
		start := time.Now()
		res, err := r.RunPrefix(ctx, p, store, prefix)
		took := time.Since(start)
		if err != nil || res.Applied != total || p.applied.Load() != total {
			b.Fatalf("RunPrefix applied %d (counted %d), err %v; want %d", res.Applied, p.applied.Load(), err, total)
		}
		return took, p.peak
	}
	scan := func() time.Duration {
		start := time.Now()
		cl := env.Client(b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		defer cl.Close()
		left := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				left[o.Partition] = o.Offset
			}
		})
		var seen int64
		for len(left) > 0 {
			fetches := cl.PollFetches(ctx)
			if err := fetches.Err0(); err != nil {
				b.Fatal(err)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				seen++
				if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
					delete(left, r.Partition)
				}
			})
		}
		took := time.Since(start)
		if seen < total {
			b.Fatalf("plain scan saw %d records, want %d", seen, total)
		}
		return took
	}
	// One stream among many: ReadStream reads its partition from the
	// stream's first record to the partition's end.
	one := prefix + "0"
	entry, _, err := s.Entry(ctx, one)
	if err != nil {
		b.Fatal(err)
	}
	readOne := func() time.Duration {
		start := time.Now()
		n := 0
		for _, err := range s.ReadStream(ctx, one, 0) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != perStream {
			b.Fatalf("ReadStream of %s yielded %d events, want %d", one, n, perStream)
		}
		return time.Since(start)
	}
	var onePass, plain, byStream, single time.Duration
	var peak uint64
	for b.Loop() {
		took, p := run(s)
		onePass += took
		peak = max(peak, p)
		plain += scan()
		single += readOne()
		if streams <= 200 {
			took, _ := run(streamByStream{s})
			byStream += took
		}
	}
	n := float64(total) * float64(b.N)
	b.ReportMetric(n/onePass.Seconds(), "onepass-events/s")
	b.ReportMetric(n/plain.Seconds(), "plain-events/s")
	b.ReportMetric(plain.Seconds()/onePass.Seconds(), "onepass/plain-speed")
	if byStream > 0 {
		b.ReportMetric(plain.Seconds()/byStream.Seconds(), "bystream/plain-speed")
	}
	b.ReportMetric(float64(peak), "peak-heap-B")
	b.ReportMetric(single.Seconds()*1000/float64(b.N), "readstream-one-ms")
	b.ReportMetric(float64(ends[topic][entry.Partition].Offset-entry.FirstOffset), "readstream-one-records-read")
}
