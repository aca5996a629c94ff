package kafkarunner_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
)

// BenchmarkRunnerScaling consumes a topic of N records and one of 5N (the
// same 10,000 streams and 12 partitions, 200 B records) with the runner (a
// trivial projection, cursors in Redis), one after the other in the same
// run, each in a new consumer group. It reports the time ratio (linear:
// about 5) and the ratio of the peak live heap during each run (bounded
// memory: about 1; sampled every 10 ms, the live heap before the run
// subtracted). N is PROJECTOR_BENCH_RECORDS (default 1,000,000).
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench RunnerScaling -benchtime 1x -count 3 -timeout 60m ./kafkarunner
func BenchmarkRunnerScaling(b *testing.B) {
	records := benchEnvInt(b, "PROJECTOR_BENCH_RECORDS", 1_000_000)
	streams := benchEnvInt(b, "PROJECTOR_BENCH_STREAMS", 10_000)
	const partitions = 12
	small, env := newStore(b, kafkastore.Config{Partitions: partitions})
	produceBenchTopic(b, env, small.Config().Topic, records, streams)
	large, _ := newStore(b, kafkastore.Config{Partitions: partitions, Topic: env.TopicName(b, "events-5x")})
	produceBenchTopic(b, env, large.Config().Topic, 5*records, streams)
	red := redisFor(b)

	run := func(store *kafkastore.Store, total int64, iter int) (time.Duration, uint64) {
		return measuredRun(b, red, env.Seeds, store, total, fmt.Sprintf("bench-scale-%d-%d", time.Now().UnixNano(), iter))
	}

	var smallWall, largeWall time.Duration
	var smallPeak, largePeak uint64
	iter := 0
	for b.Loop() {
		iter++
		w, p := run(small, int64(records), iter)
		smallWall += w
		smallPeak = max(smallPeak, p)
		w, p = run(large, int64(5*records), iter)
		largeWall += w
		largePeak = max(largePeak, p)
	}
	b.ReportMetric(largeWall.Seconds()/smallWall.Seconds(), "time-5x/1x")
	b.ReportMetric(float64(largePeak)/float64(max(smallPeak, 1)), "peak-heap-5x/1x")
	b.ReportMetric(float64(smallPeak)/(1<<20), "peak-heap-1x-MiB")
	b.ReportMetric(float64(largePeak)/(1<<20), "peak-heap-5x-MiB")
	b.ReportMetric(float64(records*b.N)/smallWall.Seconds(), "events/s-1x")
	b.ReportMetric(float64(5*records*b.N)/largeWall.Seconds(), "events/s-5x")
}

// heapBytes returns the bytes of the heap the last garbage collection
// found live: what the runner holds, not the garbage it made since.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// measuredRun consumes store's topic of total records with a counting
// runner in a new consumer group named name, and returns the time it took
// and the peak live heap during the run (sampled every 10 ms, the live heap
// before the run subtracted).
func measuredRun(b *testing.B, red redis.UniversalClient, seeds []string, store *kafkastore.Store, total int64, name string, tweak ...func(*kafkarunner.Config)) (time.Duration, uint64) {
	b.Helper()
	r, applied := countingRunner(b, red, seeds, store, name, tweak...)
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.Run(ctx) }()
	for applied.Load() < total {
		time.Sleep(time.Millisecond)
	}
	wall := time.Since(start)
	close(stop)
	<-sampled
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if applied.Load() != total {
		b.Fatalf("applied %d of %d", applied.Load(), total)
	}
	return wall, max(peak.Load(), base) - base
}

// BenchmarkRunnerFetchMaxBytes consumes one topic (as BenchmarkRunnerScaling's
// smaller one: PROJECTOR_BENCH_RECORDS, default 1,000,000, of 200 B, 10,000
// streams, 12 partitions) with the runner's default Config.FetchMaxBytes (4
// MiB) and with franz-go's default (50 MiB), alternately, each run in a new
// consumer group, and reports the ratios of events/s and of the peak live
// heap (default / franz-go's).
//
//	go test -run '^$' -bench RunnerFetchMaxBytes -benchtime 2x -count 3 -timeout 40m ./kafkarunner
func BenchmarkRunnerFetchMaxBytes(b *testing.B) {
	records := benchEnvInt(b, "PROJECTOR_BENCH_RECORDS", 1_000_000)
	streams := benchEnvInt(b, "PROJECTOR_BENCH_STREAMS", 10_000)
	store, env := newStore(b, kafkastore.Config{Partitions: 12})
	produceBenchTopic(b, env, store.Config().Topic, records, streams)
	red := redisFor(b)
	franzDefault := func(c *kafkarunner.Config) { c.FetchMaxBytes = 50 << 20 }
	var wall [2]time.Duration
	var peak [2]uint64
	iter := 0
	for b.Loop() {
		iter++
		for i, tweak := range []func(*kafkarunner.Config){func(*kafkarunner.Config) {}, franzDefault} {
			w, p := measuredRun(b, red, env.Seeds, store, int64(records), fmt.Sprintf("bench-fetch-%d-%d-%d", time.Now().UnixNano(), iter, i), tweak)
			wall[i] += w
			peak[i] = max(peak[i], p)
		}
	}
	b.ReportMetric(wall[1].Seconds()/wall[0].Seconds(), "events/s-default/50MiB")
	b.ReportMetric(float64(peak[0])/float64(max(peak[1], 1)), "peak-heap-default/50MiB")
	b.ReportMetric(float64(peak[0])/(1<<20), "peak-heap-default-MiB")
	b.ReportMetric(float64(peak[1])/(1<<20), "peak-heap-50MiB-MiB")
}
