package redischeckpoint_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// BenchmarkAdvance1000 advances 1000 cursors per call (all of them move)
// and, in the same loop, writes the same 1000 fields with one plain HSET:
// the baseline of what a single round trip of that size costs. It reports
// both as fields/s and their ratio.
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench Advance1000 -count 6 ./redischeckpoint
func BenchmarkAdvance1000(b *testing.B) {
	env := testenv.Redis(b)
	ns := env.Prefix(b)
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: env.Client, Namespace: ns})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("process/bench/%04d", i)
	}
	cursors := make(map[string]uint64, n)
	hset := make([]any, 0, 2*n)
	plainKey := ns + ":{bench}:plain"
	var advance, plain time.Duration
	seq := uint64(0)
	for b.Loop() {
		seq++
		hset = hset[:0]
		for _, id := range ids {
			cursors[id] = seq
			hset = append(hset, id, seq)
		}
		start := time.Now()
		if err := s.Advance(ctx, "bench", cursors); err != nil {
			b.Fatal(err)
		}
		advance += time.Since(start)
		start = time.Now()
		if err := env.Client.HSet(ctx, plainKey, hset...).Err(); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
	}
	fields := float64(n * b.N)
	b.ReportMetric(fields/advance.Seconds(), "advance-fields/s")
	b.ReportMetric(fields/plain.Seconds(), "hset-fields/s")
	b.ReportMetric(plain.Seconds()/advance.Seconds(), "advance/hset-speed")
}

// BenchmarkApplyBatch applies batches of 1000 events, one HINCRBY each,
// of streams (one event per stream and batch, as a partition of a topic
// with many streams delivers them), fenced as the runner applies them,
// and in the same loop sends the same HINCRBYs as one pipeline: the
// baseline. It reports both as events/s, and the Redis server's CPU per
// event of both (INFO cpu), with their ratios.
//
//	scripts/infra.sh up; eval "$(scripts/infra.sh env)"
//	go test -run '^$' -bench ApplyBatch -count 3 ./redischeckpoint
func BenchmarkApplyBatch(b *testing.B) {
	env := testenv.Redis(b)
	if !env.Real {
		b.Skip("Redis CPU is measured on a real server")
	}
	ns := env.Prefix(b)
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: env.Client, Namespace: ns})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	const batch, streams = 1000, 10_000
	p, err := s.NewAtomicProjection("bench", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	f, err := s.AcquireFence(ctx, "bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	fenced := controlplane.WithFence(ctx, f)
	ids := make([]string, streams)
	for i := range ids {
		ids[i] = fmt.Sprintf("process/bench/%05d", i)
	}
	seqs := make([]uint64, streams)
	events := make([]framework.Event, batch)
	plainKey := ns + ":{plain}:counts"
	var apply, plain, applyRedis, plainRedis time.Duration
	next := 0
	offset := int64(0)
	for b.Loop() {
		for i := range events {
			st := next % streams
			next++
			seqs[st]++
			offset++
			events[i] = framework.Event{StreamID: ids[st], Sequence: seqs[st], EventID: fmt.Sprintf("%s#%d", ids[st], seqs[st]), Type: "Counted",
				Position: &framework.Position{Partition: 0, Offset: offset}}
		}
		r0, start := testenv.RedisCPU(b, env.Client), time.Now()
		n, err := p.ApplyBatch(fenced, events)
		if err != nil || n != batch {
			b.Fatalf("ApplyBatch = %d, %v", n, err)
		}
		apply += time.Since(start)
		applyRedis += testenv.RedisCPU(b, env.Client) - r0
		r0, start = testenv.RedisCPU(b, env.Client), time.Now()
		pipe := env.Client.Pipeline()
		for _, e := range events {
			pipe.HIncrBy(ctx, plainKey, e.StreamID, 1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
		plainRedis += testenv.RedisCPU(b, env.Client) - r0
	}
	n := float64(batch * b.N)
	b.ReportMetric(n/apply.Seconds(), "apply-events/s")
	b.ReportMetric(n/plain.Seconds(), "pipelined-events/s")
	b.ReportMetric(plain.Seconds()/apply.Seconds(), "apply/pipelined-speed")
	b.ReportMetric(float64(applyRedis.Nanoseconds())/n/1e3, "apply-redis-µs/event")
	b.ReportMetric(float64(plainRedis.Nanoseconds())/n/1e3, "pipelined-redis-µs/event")
	b.ReportMetric(applyRedis.Seconds()/plainRedis.Seconds(), "apply/pipelined-redis-cpu")
}
