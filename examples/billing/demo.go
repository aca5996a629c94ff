package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// fakeRedisMaLos is the demo's default number of MaLos on miniredis.
const fakeRedisMaLos = 300

// demo runs everything in one process: Kafka and Redis in-process (unless
// -brokers or -redis name real ones), a generated month appended through
// kafkastore, the billing projection, a check of the read model against the
// generator's expected totals, and the API until interrupted.
func demo(ctx context.Context, o options, out io.Writer) error {
	started := time.Now()
	if len(o.brokers) == 0 {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(o.partitions))
		if err != nil {
			return fmt.Errorf("in-process Kafka: %w", err)
		}
		defer cluster.Close()
		o.brokers = cluster.ListenAddrs()
		fmt.Fprintf(out, "Kafka: in-process fake (kfake) on %v\n", o.brokers)
	} else {
		fmt.Fprintf(out, "Kafka: %v\n", o.brokers)
	}
	var client redis.UniversalClient
	if o.redisURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("in-process Redis: %w", err)
		}
		defer mr.Close()
		client = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		fmt.Fprintf(out, "Redis: in-process fake (miniredis) on %s\n", mr.Addr())
		if !o.malosSet && o.malos > fakeRedisMaLos {
			// Every quarter-hour value is one Replace in a Lua script, and
			// miniredis interprets Lua in Go and keeps hashes in Go maps: a
			// full month of 2,000 MaLos (6 million values) takes minutes and
			// gigabytes there, seconds and about 100 MB in Redis.
			o.malos = fakeRedisMaLos
			fmt.Fprintf(out, "  %d MaLos by default on the fake; -malos 2000 for the full month, or -redis redis://... for a real Redis\n", o.malos)
		}
		// miniredis runs the projection's Lua scripts in Go and allocates
		// heavily; a larger heap goal roughly halves the projection time.
		if _, set := os.LookupEnv("GOGC"); !set {
			debug.SetGCPercent(400)
		}
	} else {
		var err error
		if client, err = redisClient(o); err != nil {
			return err
		}
		fmt.Fprintf(out, "Redis: %s\n", o.redisURL)
	}
	defer client.Close()

	events, err := openEvents(ctx, o)
	if err != nil {
		return err
	}
	defer events.Close()
	fmt.Fprintf(out, "\ngenerating %s for %d MaLos of tenant %s into topic %s ...\n", o.month, o.malos, o.tenant, o.topic)
	want, stats, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: o.tenant, Month: o.month, MaLos: o.malos, Seed: o.seed})
	if err != nil {
		return err
	}
	printGenerated(out, want, stats)

	rm, err := openReadModel(o, client)
	if err != nil {
		return err
	}
	// The demo's read model starts empty, also on a real Redis used before.
	if err := rm.projection.Reset(ctx); err != nil {
		return err
	}

	// TODO(runner): start three replicas of kafkastore.NewRunner here
	// instead of the in-process catch-up below, each with its own
	// /healthz and /readyz (Runner.Handler) on its own port:
	//
	//	runner, err := kafkastore.NewRunner(kafkastore.RunnerConfig{
	//		Seeds: o.brokers, Topic: o.topic, Projection: rm.projection, Checkpoints: rm.store})
	//	go runner.Run(ctx)
	//
	// then wait until the group's lag is zero (and the status reports it)
	// before verifying. The placeholder reads every stream through
	// kafkastore.Store with framework's in-process runner.
	status := &demoStatus{projection: o.projection}
	status.state.Store("catching-up")
	fmt.Fprintf(out, "\nprojecting %d events into Redis (projection %q, in-process runner) ...\n", stats.Events, o.projection)
	projectStart := time.Now()
	if err := catchUp(ctx, o, events, rm, status, stats.Events, out); err != nil {
		return err
	}
	status.state.Store("caught-up")
	fmt.Fprintf(out, "applied %d events of %d streams in %v\n", status.applied.Load(), stats.Streams, time.Since(projectStart).Round(time.Millisecond))

	totals, err := rm.reader.BalanceGroups(ctx, o.month)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nbalance groups of %s, tenant %s (read model):\n", o.month, o.tenant)
	fmt.Fprintf(out, "  %-16s %-22s %6s %18s %8s %8s %9s\n", "EIC", "name", "MaLos", "energy", "subst.", "peak", "clearing")
	names := map[string]string{}
	for _, bg := range loadgen.DefaultMarket().BalanceGroups {
		names[bg.EIC] = bg.Name
	}
	for _, t := range totals.BalanceGroups {
		fmt.Fprintf(out, "  %-16s %-22s %6d %18s %8d %8d %4d open\n", t.EIC, names[t.EIC], t.AssignedMaLos, mabis.FormatWh(t.EnergyWh),
			t.SubstituteValues, t.PeakMaLos, t.ClearingOpened-t.ClearingResolved)
	}
	fmt.Fprintf(out, "  %-16s %-22s %6s %18s %8d %8s %4d open\n", "total", "", "", mabis.FormatWh(totals.EnergyWh), totals.SubstituteValues, "", totals.ClearingOpen)
	verifyStart := time.Now()
	if err := want.Verify(ctx, rm.reader); err != nil {
		fmt.Fprintf(out, "\nthe read model DIFFERS from the expected totals:\n%v\n", err)
		status.state.Store("differs from expected")
	} else {
		fmt.Fprintf(out, "\nthe read model equals the expected totals: every quarter hour of every balance group (checked in %v)\n", time.Since(verifyStart).Round(time.Millisecond))
	}
	fmt.Fprintf(out, "demo ready after %v\n", time.Since(started).Round(time.Millisecond))

	h, err := api.New(api.Config{Reader: rm.reader, Logger: o.logger, Status: status.get})
	if err != nil {
		return err
	}
	eic := ""
	if len(totals.BalanceGroups) > 0 {
		eic = totals.BalanceGroups[0].EIC
	}
	return serveHTTP(ctx, o.httpAddr, h, func(addr string) {
		base := apiURL(addr)
		fmt.Fprintf(out, "\nAPI (Ctrl-C to stop):\n  %s/api/v1/months/%s/balance-groups\n", base, o.month)
		if eic != "" {
			fmt.Fprintf(out, "  %s/api/v1/months/%s/balance-groups/%s/series?resolution=hour\n", base, o.month, eic)
		}
		fmt.Fprintf(out, "  %s/api/v1/status\n", base)
	})
}

// catchUp applies every stream of the tenant with framework's in-process
// runner, printing progress every few seconds.
func catchUp(ctx context.Context, o options, events framework.EventStore, rm *readModel, status *demoStatus, total int, out io.Writer) error {
	runner, err := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 8})
	if err != nil {
		return err
	}
	prefix, err := framework.TenantPrefix(o.tenant)
	if err != nil {
		return err
	}
	p := &countingProjection{AtomicProjection: rm.projection, applied: &status.applied}
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				n := status.applied.Load()
				fmt.Fprintf(out, "  ... %d of %d events applied (%d%%, %.0f/s)\n", n, total, n*100/int64(max(total, 1)), float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	_, err = runner.RunPrefix(ctx, p, events, prefix)
	return err
}

// countingProjection counts applied events for the progress report and the
// status endpoint.
type countingProjection struct {
	*redischeckpoint.AtomicProjection
	applied *atomic.Int64
}

// ApplyBatch implements framework.BatchApplier.
func (p *countingProjection) ApplyBatch(ctx context.Context, events []framework.Event) (int, error) {
	n, err := p.AtomicProjection.ApplyBatch(ctx, events)
	p.applied.Add(int64(n))
	return n, err
}

// Apply implements framework.Projection.
func (p *countingProjection) Apply(ctx context.Context, e framework.Event) error {
	_, err := p.ApplyBatch(ctx, []framework.Event{e})
	return err
}

// demoStatus is what the demo's /api/v1/status reports.
type demoStatus struct {
	projection string
	state      atomic.Value // string
	applied    atomic.Int64
}

func (s *demoStatus) get(context.Context) (api.Status, error) {
	state, _ := s.state.Load().(string)
	return api.Status{Projection: s.projection, State: state, Applied: s.applied.Load(), UpdatedAt: time.Now().UTC()}, nil
}
