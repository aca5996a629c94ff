package mabis_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// BenchmarkProjectMonth projects a generated month of 200 MaLos (about
// 6,400 events) into Redis per iteration, on the Redis testenv finds and on
// miniredis, and reports events per second.
//
//	go test ./examples/billing/mabis -run '^$' -bench ProjectMonth -benchtime 1x
func BenchmarkProjectMonth(b *testing.B) {
	ctx := context.Background()
	cfg := loadgen.Config{Tenant: "netz-bench", Month: mustMonth(b, "2026-03"), MaLos: 200, Seed: 5}
	events := memstore.NewEventStore()
	want, stats, err := loadgen.Generate(ctx, events, cfg)
	if err != nil {
		b.Fatal(err)
	}
	prefix, _ := framework.TenantPrefix(cfg.Tenant)
	bench := func(b *testing.B, client redis.UniversalClient, namespace string) {
		store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: namespace})
		if err != nil {
			b.Fatal(err)
		}
		p, err := mabis.NewProjection(store, mabis.ProjectionName)
		if err != nil {
			b.Fatal(err)
		}
		reader, _ := mabis.NewReader(p, cfg.Tenant)
		runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 8})
		var spent time.Duration
		for b.Loop() {
			if err := p.Reset(ctx); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := runner.RunPrefix(ctx, p, events, prefix); err != nil {
				b.Fatal(err)
			}
			spent += time.Since(start)
		}
		b.ReportMetric(float64(stats.Events)*float64(b.N)/spent.Seconds(), "events/s")
		if err := want.Verify(ctx, reader); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("redis", func(b *testing.B) {
		env := testenv.Redis(b)
		bench(b, env.Client, env.Prefix(b))
	})
	b.Run("miniredis", func(b *testing.B) {
		mr := miniredis.RunT(b)
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer client.Close()
		bench(b, client, "bench")
	})
}
