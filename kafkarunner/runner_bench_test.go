package kafkarunner_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingRunner returns a runner of store's topic with a projection named
// name that only counts the events it applies (cursors in red, under
// namespace name), and the count.
func countingRunner(b *testing.B, red redis.UniversalClient, seeds []string, store *kafkastore.Store, name string, tweak ...func(*kafkarunner.Config)) (*kafkarunner.Runner, *atomic.Int64) {
	b.Helper()
	applied := new(atomic.Int64)
	p := framework.ProjectionFunc(name, func(context.Context, framework.Event) error { applied.Add(1); return nil })
	rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: red, Namespace: name})
	if err != nil {
		b.Fatal(err)
	}
	cfg := kafkarunner.Config{Seeds: seeds, Topic: store.Config().Topic, Projection: p, Checkpoints: rstore, Events: store}
	for _, t := range tweak {
		t(&cfg)
	}
	r, err := kafkarunner.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return r, applied
}

// BenchmarkRunnerVersusPollLoop consumes the same 500,000 events (2,000
// streams, 6 partitions) with the runner (a trivial in-memory projection,
// cursors in Redis with the default flush policy) and with a plain franz-go
// poll loop doing the same work (decode, count, commit per poll), each in a
// new consumer group, in the same run. It reports events/s and CPU per
// event of both, their ratio, and how long the runner took from start to
// its first applied record (joining the group and fetching).
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench RunnerVersusPollLoop -benchtime 3x -count 3 ./kafkastore
func BenchmarkRunnerVersusPollLoop(b *testing.B) {
	store, env, total := appendBenchEvents(b)
	ctx := context.Background()
	red := redisFor(b)

	var runnerWall, runnerCPU, plainWall, plainCPU, firstRecord time.Duration
	iter := 0
	for b.Loop() {
		iter++
		// The runner.
		name := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), iter)
		r, applied := countingRunner(b, red, env.Seeds, store, name)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start, cpu0 := time.Now(), cpuTime()
		go func() { done <- r.Run(rctx) }()
		for applied.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		firstRecord += time.Since(start)
		for applied.Load() < total {
			time.Sleep(time.Millisecond)
		}
		runnerWall += time.Since(start)
		runnerCPU += cpuTime() - cpu0
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		// The plain loop.
		start, cpu0 = time.Now(), cpuTime()
		cl, err := kgo.NewClient(kgo.SeedBrokers(env.Seeds...), kgo.ConsumerGroup(name+"-plain"), kgo.ConsumeTopics(store.Config().Topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			b.Fatal(err)
		}
		counts := map[string]int{}
		var seen int64
		for seen < total {
			fetches := cl.PollRecords(ctx, 1000)
			recs := fetches.Records()
			for _, rec := range recs {
				e, err := kafkastore.DecodeRecord(rec)
				if err != nil {
					b.Fatal(err)
				}
				counts[e.StreamID]++
			}
			seen += int64(len(recs))
			if len(recs) > 0 {
				if err := cl.CommitRecords(ctx, recs...); err != nil {
					b.Fatal(err)
				}
			}
		}
		plainWall += time.Since(start)
		plainCPU += cpuTime() - cpu0
		cl.Close()
	}
	n := float64(total * int64(b.N))
	b.ReportMetric(n/runnerWall.Seconds(), "runner-events/s")
	b.ReportMetric(n/plainWall.Seconds(), "plain-events/s")
	b.ReportMetric(plainWall.Seconds()/runnerWall.Seconds(), "runner/plain-speed")
	b.ReportMetric(float64(runnerCPU.Nanoseconds())/n, "runner-cpu-ns/event")
	b.ReportMetric(float64(plainCPU.Nanoseconds())/n, "plain-cpu-ns/event")
	b.ReportMetric(float64(firstRecord.Milliseconds())/float64(b.N), "start-to-first-record-ms")
}

// appendBenchEvents appends the 500,000 events of the runner benchmarks
// (2,000 streams of 250 Counted events, 6 partitions) through a new store
// and returns it with its environment and the number of events.
func appendBenchEvents(b *testing.B) (*kafkastore.Store, *testenv.KafkaEnv, int64) {
	b.Helper()
	const streams, perStream = 2000, 250
	store, env := newStore(b, kafkastore.Config{Partitions: 6})
	batch := make([]framework.EventData, perStream)
	for i := range batch {
		batch[i] = framework.EventData{Type: "Counted", Data: payload}
	}
	for i := range streams {
		if _, err := store.Append(context.Background(), fmt.Sprintf("process/bench/%04d", i), framework.AnyVersion, batch); err != nil {
			b.Fatal(err)
		}
	}
	return store, env, streams * perStream
}
