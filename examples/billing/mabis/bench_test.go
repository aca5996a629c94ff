package mabis_test

import (
	"context"
	"strconv"
	"strings"
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
// miniredis, and reports events per second. On real Redis it also reports
// what Redis spent per event (CPU from INFO cpu, commands from INFO
// commandstats, those run by the scripts included) and the read model's
// memory per MaLo-month (MEMORY USAGE of every read-model key after the
// last iteration). The Redis figures are only meaningful when nothing else
// uses that Redis meanwhile.
//
//	go test ./examples/billing/mabis -run '^$' -bench ProjectMonth/redis -benchtime 3x -count 3
func BenchmarkProjectMonth(b *testing.B) {
	ctx := context.Background()
	cfg := loadgen.Config{Tenant: "netz-bench", Month: mustMonth(b, "2026-03"), MaLos: 200, Seed: 5}
	events := memstore.NewEventStore()
	want, stats, err := loadgen.Generate(ctx, events, cfg)
	if err != nil {
		b.Fatal(err)
	}
	prefix, _ := framework.TenantPrefix(cfg.Tenant)
	bench := func(b *testing.B, client redis.UniversalClient, namespace string, real bool) {
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
		var cpu, calls float64
		for b.Loop() {
			if err := p.Reset(ctx); err != nil {
				b.Fatal(err)
			}
			var before redisStats
			if real {
				before = readRedisStats(b, client)
			}
			start := time.Now()
			if _, err := runner.RunPrefix(ctx, p, events, prefix); err != nil {
				b.Fatal(err)
			}
			spent += time.Since(start)
			if real {
				after := readRedisStats(b, client)
				cpu += after.cpu - before.cpu
				calls += after.calls - before.calls
			}
		}
		n := float64(stats.Events) * float64(b.N)
		b.ReportMetric(n/spent.Seconds(), "events/s")
		if real {
			b.ReportMetric(cpu/n*1e6, "redis-µs/event")
			b.ReportMetric(calls/n, "redis-cmds/event")
			b.ReportMetric(readModelBytes(b, client, p.Key()+"*")/float64(cfg.MaLos), "B/malo-month")
		}
		if err := want.Verify(ctx, reader); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("redis", func(b *testing.B) {
		env := testenv.Redis(b)
		bench(b, env.Client, env.Prefix(b), true)
	})
	b.Run("miniredis", func(b *testing.B) {
		mr := miniredis.RunT(b)
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer client.Close()
		bench(b, client, "bench", false)
	})
}

type redisStats struct{ cpu, calls float64 }

// readRedisStats reads the server's CPU seconds (user+sys, main thread
// and all) and the number of commands it ran.
func readRedisStats(b *testing.B, client redis.UniversalClient) redisStats {
	b.Helper()
	info, err := client.Info(context.Background(), "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var s redisStats
	for line := range strings.SplitSeq(info, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		switch {
		case name == "used_cpu_sys" || name == "used_cpu_user":
			v, _ := strconv.ParseFloat(value, 64)
			s.cpu += v
		case strings.HasPrefix(name, "cmdstat_"):
			for f := range strings.SplitSeq(value, ",") {
				if c, ok := strings.CutPrefix(f, "calls="); ok {
					v, _ := strconv.ParseFloat(c, 64)
					s.calls += v
				}
			}
		}
	}
	return s
}

// readModelBytes sums MEMORY USAGE (every element counted) of the keys
// matching pattern.
func readModelBytes(b *testing.B, client redis.UniversalClient, pattern string) float64 {
	b.Helper()
	ctx := context.Background()
	var total float64
	iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n, err := client.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		total += float64(n)
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return total
}
