package redischeckpoint_test

import (
	"fmt"
	"testing"
	"time"

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
