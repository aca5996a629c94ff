package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/telemetry"
)

// demo runs everything in one process: Kafka and Redis in-process (unless
// -brokers or -redis name real ones), a generated month appended through
// kafkastore, o.replicas replicas of the consumer-group runner applying it
// to the billing read model, a check of the read model against the
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
	redisURL := o.redisURL
	if o.redisURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("in-process Redis: %w", err)
		}
		defer mr.Close()
		client = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		redisURL = "redis://" + mr.Addr()
		fmt.Fprintf(out, "Redis: in-process fake (miniredis) on %s\n", mr.Addr())
		// miniredis runs the projection's Lua scripts in Go and allocates
		// heavily; a larger heap goal saves about a fifth of the time, and
		// the soft memory limit keeps the heap from growing past 1 GiB.
		if _, set := os.LookupEnv("GOGC"); !set {
			debug.SetGCPercent(400)
		}
		if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
			debug.SetMemoryLimit(1 << 30)
		}
	} else {
		var err error
		if client, err = redisClient(o); err != nil {
			return err
		}
		fmt.Fprintf(out, "Redis: %s\n", o.redisURL)
	}
	defer client.Close()

	// The demo is the topic's only writer process: an in-memory append
	// registry serves it (it learns existing streams from the topic).
	events, err := openEvents(ctx, o, nil, appendguard.NewMemory())
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
	adm, err := kafkaAdmin(o)
	if err != nil {
		return err
	}
	defer adm.Close()

	// Metrics are recorded and served on /metrics; traces and metrics are
	// exported only where the OTEL_* variables say so.
	tel, shutdownTelemetry, err := setupTelemetry(ctx, o, "projector-billing-demo")
	if err != nil {
		return err
	}
	defer shutdownTelemetry()

	fmt.Fprintf(out, "\nprojecting %d events into Redis with %d runner replicas (projection %q, consumer group %q) ...\n",
		stats.Events, o.replicas, o.projection, o.groupName())
	projectStart := time.Now()
	reps, err := startReplicas(ctx, o, rm, tel)
	if err != nil {
		return err
	}
	defer reps.stop()
	var state atomic.Value
	state.Store("catching-up")
	opts, err := kafkaOpts(o)
	if err != nil {
		return errors.Join(err, reps.stop())
	}
	status, err := ops.New(ops.Config{Admin: rm.store, Checkpoints: rm.store, Kafka: adm, Seeds: o.brokers, ClientOpts: opts, Topic: o.topic, Group: o.group})
	if err != nil {
		return errors.Join(err, reps.stop())
	}
	con, err := newConsole(o, status, rm, events)
	if err != nil {
		return errors.Join(err, reps.stop())
	}
	h, err := api.New(api.Config{Reader: rm.reader, Logger: o.logger, WaitFor: func(ctx context.Context, id string, seq uint64) (string, error) {
		return rm.store.WaitFor(ctx, o.projection, id, seq)
	}, Status: statusOf(status, o.projection, reps.runners, func() string { return state.Load().(string) })})
	if err != nil {
		return errors.Join(err, reps.stop())
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", h)
	mux.Handle("GET /metrics", tel.PrometheusHandler())
	mux.Handle(con.Prefix(), con)
	mux.Handle("GET /{$}", http.RedirectHandler(con.Prefix(), http.StatusFound))
	consoleCtx, stopConsole := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() { _ = con.Run(consoleCtx) })
	defer func() {
		stopConsole()
		sampler.Wait()
	}()
	for _, r := range reps.versioned {
		prefix := "/replicas/" + r.ReplicaID()
		mux.Handle(prefix+"/", http.StripPrefix(prefix, r.Handler()))
	}
	// Served from here on: the console shows the replicas catching up.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan error, 1)
	listening := make(chan string, 1)
	go func() {
		served <- serveHTTP(serveCtx, o.httpAddr, o.shutdown, mux, func(addr string) { listening <- addr })
	}()
	var base string
	select {
	case addr := <-listening:
		base = apiURL(addr)
	case err := <-served:
		return errors.Join(err, reps.stop())
	}
	fmt.Fprintf(out, "console: %s%s (live: the replicas catching up, their lag and partitions)\n", base, con.Prefix())
	fail := func(err error) error {
		stopServing()
		return errors.Join(err, <-served, reps.stop())
	}
	if err := waitCaughtUp(ctx, o, adm, reps, int64(stats.Events), out); err != nil {
		return fail(err)
	}
	var applied int64
	for _, r := range reps.runners() {
		applied += r.Stats().Applied
	}
	fmt.Fprintf(out, "applied %d events of %d streams in %v; lag 0\n", applied, stats.Streams, time.Since(projectStart).Round(time.Millisecond))
	for _, r := range reps.runners() {
		p := r.Assigned()
		slices.Sort(p)
		fmt.Fprintf(out, "  replica %s: partitions %v, %d applied\n", r.ReplicaID(), p, r.Stats().Applied)
	}

	totals, err := rm.reader.BalanceGroups(ctx, o.month)
	if err != nil {
		return fail(err)
	}
	printTotals(out, o, totals)
	verifyStart := time.Now()
	if err := want.Verify(ctx, rm.reader); err != nil {
		fmt.Fprintf(out, "\nthe read model DIFFERS from the expected totals:\n%v\n", err)
		state.Store("differs from expected")
	} else {
		fmt.Fprintf(out, "\nthe read model equals the expected totals: every quarter hour of every balance group (checked in %v)\n", time.Since(verifyStart).Round(time.Millisecond))
		state.Store("live")
	}
	fmt.Fprintf(out, "demo ready after %v\n", time.Since(started).Round(time.Millisecond))

	eic := ""
	if len(totals.BalanceGroups) > 0 {
		eic = totals.BalanceGroups[0].EIC
	}
	fmt.Fprintf(out, "\nconsole: %s%s\n", base, con.Prefix())
	if o.consoleToken == "" {
		fmt.Fprintf(out, "  read-only; set PROJECTOR_CONSOLE_ADMIN_TOKEN to retry and skip parked streams in it\n")
	} else {
		fmt.Fprintf(out, "  retry and skip after signing in with PROJECTOR_CONSOLE_ADMIN_TOKEN\n")
	}
	fmt.Fprintf(out, "\nAPI (Ctrl-C to stop):\n  %s/api/v1/months/%s/balance-groups\n", base, o.month)
	if eic != "" {
		fmt.Fprintf(out, "  %s/api/v1/months/%s/balance-groups/%s/series?resolution=hour\n", base, o.month, eic)
	}
	fmt.Fprintf(out, "  %s/api/v1/status\n  %s/metrics\n", base, base)
	fmt.Fprintf(out, "  %s/replicas/%s/readyz (and /healthz, per replica)\n", base, reps.versioned[0].ReplicaID())
	env := fmt.Sprintf("PROJECTOR_KAFKA_BROKERS=%s PROJECTOR_REDIS_URL=%s", strings.Join(o.brokers, ","), redisURL)
	if o.topic != "mabis.process-events" {
		env += " PROJECTOR_TOPIC=" + o.topic
	}
	if o.namespace != redischeckpoint.DefaultNamespace {
		env += " PROJECTOR_REDIS_NAMESPACE=" + o.namespace
	}
	if o.group != "" && o.group != o.projection {
		env += " PROJECTOR_GROUP=" + o.group
	}
	fmt.Fprintf(out, "\nadmin command against these servers (rebuild %s --yes --wait rebuilds beside the live version):\n  %s go run ./cmd/projectorctl status %s\n",
		o.projection, env, o.projection)
	err = <-served
	return errors.Join(err, reps.stop())
}

// replicas are the demo's runner replicas, each in its own goroutine. Each
// runs every version of the read model that needs it (the live one and a
// rebuild's: projectorctl rebuild works against the demo).
type replicas struct {
	versioned []*kafkarunner.VersionedRunner
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	errs      chan error
	once      sync.Once
	err       error
}

// runners returns the replicas' runners of the live version.
func (r *replicas) runners() []*kafkarunner.Runner {
	var out []*kafkarunner.Runner
	for _, v := range r.versioned {
		if l := v.Live(); l != nil {
			out = append(out, l)
		}
	}
	return out
}

func startReplicas(ctx context.Context, o options, rm *readModel, tel *telemetry.Telemetry) (*replicas, error) {
	opts, err := kafkaOpts(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	reps := &replicas{cancel: cancel, errs: make(chan error, o.replicas)}
	for i := range o.replicas {
		r, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
			Name: o.projection,
			NewProjection: func(name string) (framework.Projection, error) {
				return rm.projection.Version(name)
			},
			Runner: kafkarunner.Config{
				Seeds: o.brokers, ClientOpts: opts, Topic: o.topic, Group: o.group, Checkpoints: rm.store,
				ReplicaID:     fmt.Sprintf("demo-%d", i+1),
				FlushInterval: 250 * time.Millisecond, ShutdownTimeout: o.shutdown, Logger: o.logger,
				TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(),
			},
		})
		if err != nil {
			return nil, errors.Join(err, reps.stop())
		}
		reps.versioned = append(reps.versioned, r)
		reps.wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				reps.errs <- fmt.Errorf("replica %s: %w", r.ReplicaID(), err)
			}
		})
	}
	return reps, nil
}

// stop stops every replica gracefully and returns their errors. It may be
// called more than once.
func (r *replicas) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		close(r.errs)
		var errs []error
		for err := range r.errs {
			errs = append(errs, err)
		}
		r.err = errors.Join(errs...)
	})
	return r.err
}

// waitCaughtUp waits until the group's lag is 0, printing progress every
// few seconds. A replica that stops early ends the wait with its error.
func waitCaughtUp(ctx context.Context, o options, adm *kadm.Client, reps *replicas, total int64, out io.Writer) error {
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastReport := start
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-reps.errs:
			return err
		case <-tick.C:
		}
		var applied int64
		for _, r := range reps.runners() {
			applied += r.Stats().Applied
		}
		lag, _, err := groupLag(ctx, adm, o.groupName(), o.topic)
		if err == nil && lag == 0 && applied > 0 {
			return nil
		}
		if time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			lagText := fmt.Sprint(lag)
			if err != nil {
				lagText = "unknown (" + err.Error() + ")"
			}
			fmt.Fprintf(out, "  ... %d of %d events applied (%d%%, %.0f/s), lag %s\n",
				applied, total, applied*100/max(total, 1), float64(applied)/time.Since(start).Seconds(), lagText)
		}
	}
}

func printTotals(out io.Writer, o options, totals mabis.MonthTotals) {
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
}
