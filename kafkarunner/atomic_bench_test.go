package kafkarunner_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/benchdata"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// BenchmarkAtomicProjection measures the AtomicProjection target of issue
// 20 against its baselines, on one topic in the same run: 1,000,000
// records of 200 B value, 12 partitions, 10,000 streams (fewer with
// PROJECTOR_BENCH_RECORDS and PROJECTOR_BENCH_STREAMS), consumed in every
// iteration, each stack in a new consumer group, by
//
//   - raw: a franz-go poll loop doing nothing with a record (default
//     autocommit);
//   - pipelined: the same loop sending one HINCRBY per record (the
//     stream's field of one hash, plus one) in one pipeline per poll;
//   - atomic: the runner with an [redischeckpoint.AtomicProjection] doing
//     one HINCRBY per event, with every guarantee (fence, cursor check,
//     all or nothing per event, cursors with the read model).
//
// It reports records/s of each, the ratios atomic/pipelined and
// atomic/raw, the client CPU (this process: getrusage) and the Redis CPU
// (INFO cpu, used_cpu_user + used_cpu_sys, of the whole server) per
// record of pipelined and atomic. After each run it checks that the
// counts add up to the records: exactly once. Quick run and full run:
//
//	scripts/infra.sh up && eval "$(scripts/infra.sh env)"
//	PROJECTOR_BENCH_RECORDS=200000 go test -run '^$' -bench AtomicProjection -benchtime 1x -count 2 ./kafkarunner
//	go test -run '^$' -bench AtomicProjection -benchtime 2x -count 3 -timeout 60m ./kafkarunner
//
// The three stacks run one after the other in each iteration, so noise
// from other processes on the machine hits all of them alike; compare
// ratios, not absolute rates.
func BenchmarkAtomicProjection(b *testing.B) {
	records := benchEnvInt(b, "PROJECTOR_BENCH_RECORDS", 1_000_000)
	streams := benchEnvInt(b, "PROJECTOR_BENCH_STREAMS", 10_000)
	const partitions = 12
	store, env := newStore(b, kafkastore.Config{Partitions: partitions})
	topic := store.Config().Topic
	produceBenchTopic(b, env, topic, records, streams)
	red := redisFor(b)
	ctx := context.Background()

	var rawWall, pipeWall, atomicWall time.Duration
	var rawCPU, pipeCPU, atomicCPU, pipeRedis, atomicRedis time.Duration
	iter := 0
	for b.Loop() {
		iter++
		base := fmt.Sprintf("bench-atomic-%d-%d", time.Now().UnixNano(), iter)

		// raw
		start, cpu0 := time.Now(), cpuTime()
		pollLoop(b, env, topic, base+"-raw", records, nil)
		rawWall += time.Since(start)
		rawCPU += cpuTime() - cpu0

		// pipelined
		hash := base + ":{pipelined}:counts"
		redis0 := testenv.RedisCPU(b, red)
		start, cpu0 = time.Now(), cpuTime()
		pollLoop(b, env, topic, base+"-pipelined", records, func(recs []*kgo.Record) {
			pipe := red.Pipeline()
			for _, r := range recs {
				pipe.HIncrBy(ctx, hash, string(r.Key), 1)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		})
		pipeWall += time.Since(start)
		pipeCPU += cpuTime() - cpu0
		pipeRedis += testenv.RedisCPU(b, red) - redis0
		checkCounts(b, red, hash, records)
		red.Unlink(ctx, hash)

		// atomic
		rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: red, Namespace: base})
		if err != nil {
			b.Fatal(err)
		}
		p, err := rstore.NewAtomicProjection("atomic", func(e framework.Event, w *redischeckpoint.Writes) error {
			w.HIncrBy(w.Key("counts"), e.StreamID, 1)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		var applied countApplied
		r, err := kafkarunner.New(kafkarunner.Config{Seeds: env.Seeds, Topic: topic, Group: base + "-atomic", Projection: p,
			Checkpoints: rstore, Events: store, Hooks: []kafkarunner.Hook{&applied}})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		redis0 = testenv.RedisCPU(b, red)
		start, cpu0 = time.Now(), cpuTime()
		go func() { done <- r.Run(rctx) }()
		for applied.n.Load() < int64(records) {
			select {
			case err := <-done:
				b.Fatalf("runner stopped after %d events: %v", applied.n.Load(), err)
			case <-time.After(time.Millisecond):
			}
		}
		atomicWall += time.Since(start)
		atomicCPU += cpuTime() - cpu0
		atomicRedis += testenv.RedisCPU(b, red) - redis0
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		checkCounts(b, red, p.Key("counts"), records)
		benchdata.UnlinkPrefix(context.Background(), red, base+":")
	}
	n := float64(records * b.N)
	b.ReportMetric(n/rawWall.Seconds(), "raw-rec/s")
	b.ReportMetric(n/pipeWall.Seconds(), "pipelined-rec/s")
	b.ReportMetric(n/atomicWall.Seconds(), "atomic-rec/s")
	b.ReportMetric(pipeWall.Seconds()/atomicWall.Seconds(), "atomic/pipelined")
	b.ReportMetric(rawWall.Seconds()/atomicWall.Seconds(), "atomic/raw")
	b.ReportMetric(float64(rawCPU.Nanoseconds())/n/1e3, "raw-cpu-µs/rec")
	b.ReportMetric(float64(pipeCPU.Nanoseconds())/n/1e3, "pipelined-cpu-µs/rec")
	b.ReportMetric(float64(atomicCPU.Nanoseconds())/n/1e3, "atomic-cpu-µs/rec")
	b.ReportMetric(float64(pipeRedis.Nanoseconds())/n/1e3, "pipelined-redis-µs/rec")
	b.ReportMetric(float64(atomicRedis.Nanoseconds())/n/1e3, "atomic-redis-µs/rec")
}

type countApplied struct{ n atomic.Int64 }

func (c *countApplied) OnEventApplied(context.Context, string, framework.Event) { c.n.Add(1) }

func benchEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// produceBenchTopic writes records events of 200 B spread round robin over
// streams (benchdata.ProduceCounted).
func produceBenchTopic(b *testing.B, env *testenv.KafkaEnv, topic string, records, streams int) {
	b.Helper()
	cl := env.Client(b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err := benchdata.ProduceCounted(context.Background(), cl, records, streams, 200); err != nil {
		b.Fatal(err)
	}
}

// pollLoop consumes records records of topic in a new group, calling each
// (if not nil) with every poll's records.
func pollLoop(b *testing.B, env *testenv.KafkaEnv, topic, group string, records int, each func([]*kgo.Record)) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	seen := 0
	for seen < records {
		recs := cl.PollRecords(ctx, 1000).Records()
		if each != nil && len(recs) > 0 {
			each(recs)
		}
		seen += len(recs)
	}
}

// checkCounts fails unless the counts in hash add up to records.
func checkCounts(b *testing.B, red redis.UniversalClient, hash string, records int) {
	b.Helper()
	vals, err := red.HVals(context.Background(), hash).Result()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0
	for _, v := range vals {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		sum += n
	}
	if sum != records {
		b.Fatalf("%s counts %d events, want %d", hash, sum, records)
	}
}
