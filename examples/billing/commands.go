package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/examples/billing/pages"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/telemetry"
	"github.com/projector-dev/projector/worker"
)

// readModel is the billing projection on a Redis and a reader of it.
type readModel struct {
	client     redis.UniversalClient
	store      *redischeckpoint.Store
	projection *redischeckpoint.AtomicProjection
	reader     *mabis.Reader
}

func openReadModel(o options, client redis.UniversalClient) (*readModel, error) {
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: o.namespace, Logger: o.logger, WaitReplicas: o.waitReplicas})
	if err != nil {
		return nil, err
	}
	return newReadModel(client, store, o.projection, o.tenant)
}

// newReadModel is the billing projection named projection on store, with a
// reader of tenant's balance groups.
func newReadModel(client redis.UniversalClient, store *redischeckpoint.Store, projection, tenant string) (*readModel, error) {
	p, err := mabis.NewProjection(store, projection)
	if err != nil {
		return nil, err
	}
	reader, err := mabis.NewReader(p, tenant)
	if err != nil {
		return nil, err
	}
	return &readModel{client: client, store: store, projection: p, reader: reader}, nil
}

func redisClient(o options) (redis.UniversalClient, error) {
	if o.redisURL == "" {
		return nil, errors.New("no Redis: set -redis or PROJECTOR_REDIS_URL")
	}
	return redischeckpoint.NewClient(redischeckpoint.ClientConfig{URL: o.redisURL, Username: o.redisUser, Password: o.redisPass, CAFile: o.redisCA})
}

// appendRegistry is the registry of the topic's appends in o's Redis.
func appendRegistry(o options, client redis.UniversalClient) (*redischeckpoint.AppendRegistry, error) {
	return redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: client, Namespace: o.namespace, Logger: o.logger, WaitReplicas: o.waitReplicas}, o.topic)
}

// kafkaOpts are the franz-go options for o's SASL and TLS settings.
func kafkaOpts(o options) ([]kgo.Opt, error) {
	if len(o.brokers) == 0 {
		return nil, errors.New("no Kafka: set -brokers or PROJECTOR_KAFKA_BROKERS")
	}
	return o.kafka.Opts()
}

// openEvents opens the event topic; with tel, appends are traced (an
// append span per call, a publish span per record, the context in the
// record headers). guard is the append registry every writer of the topic
// shares (nil: the Store only reads).
func openEvents(ctx context.Context, o options, tel *telemetry.Telemetry, guard appendguard.Registry) (*kafkastore.Store, error) {
	opts, err := kafkaOpts(o)
	if err != nil {
		return nil, err
	}
	cfg := kafkastore.Config{Seeds: o.brokers, Topic: o.topic, Partitions: int32(o.partitions), ClientOpts: opts, Logger: o.logger, Guard: guard}
	if tel != nil {
		cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator = tel.TracerProvider(), tel.MeterProvider(), tel.Propagator()
	}
	return kafkastore.New(ctx, cfg)
}

// kafkaAdmin returns an admin client, for the lag in the status.
func kafkaAdmin(o options) (*kadm.Client, error) {
	opts, err := kafkaOpts(o)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.brokers...)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// setupTelemetry configures OpenTelemetry from the OTEL_* variables; the
// returned func flushes and stops it (export errors are logged by
// telemetry: nothing else to do on the way out).
func setupTelemetry(ctx context.Context, o options, service string) (*telemetry.Telemetry, func(), error) {
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: service, Logger: o.logger})
	if err != nil {
		return nil, nil, err
	}
	return tel, func() {
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(shutdown)
	}, nil
}

// generate appends a generated month to the topic.
func generate(ctx context.Context, o options, out io.Writer) error {
	tel, shutdown, err := setupTelemetry(ctx, o, "projector-billing-generator")
	if err != nil {
		return err
	}
	defer shutdown()
	// Several generators may append to one topic: they share the append
	// registry in Redis, so expected versions hold across them.
	client, err := redisClient(o)
	if err != nil {
		return err
	}
	defer client.Close()
	guard, err := appendRegistry(o, client)
	if err != nil {
		return err
	}
	events, err := openEvents(ctx, o, tel, guard)
	if err != nil {
		return err
	}
	defer events.Close()
	fmt.Fprintf(out, "generating %s for %d MaLos of tenant %s into topic %s on %v\n", o.month, o.malos, o.tenant, o.topic, o.brokers)
	x, stats, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: o.tenant, Month: o.month, MaLos: o.malos, Seed: o.seed})
	if err != nil {
		return err
	}
	printGenerated(out, x, stats)
	printExpected(out, x)
	return nil
}

// serveAPI serves the API over the read model in Redis. The projection runs
// elsewhere (billing worker), so the status says only that.
func serveAPI(ctx context.Context, o options, out io.Writer) error {
	client, err := redisClient(o)
	if err != nil {
		return err
	}
	defer client.Close()
	rm, err := openReadModel(o, client)
	if err != nil {
		return err
	}
	h, err := api.New(api.Config{Reader: rm.reader, Logger: o.logger, WaitFor: func(ctx context.Context, id string, seq uint64) (string, error) {
		return rm.store.WaitFor(ctx, o.projection, id, seq)
	}, Status: statusOf(nil, o.projection, nil, nil)})
	if err != nil {
		return err
	}
	return serveHTTP(ctx, o.httpAddr, o.shutdown, h, func(addr string) {
		fmt.Fprintf(out, "billing API for tenant %s: %s/api/v1/months/%s/balance-groups\n", o.tenant, apiURL(addr), o.month)
	})
}

// closeMonth closes -month of -tenant in the live read model
// (mabis.Reader.CloseMonth): it refuses a month inside its correction
// window, drops the per-MaLo detail and keeps the balance-group series.
// Run again, it resumes a closing that stopped half way, or reports the
// month closed.
func closeMonth(ctx context.Context, o options, out io.Writer) error {
	client, err := redisClient(o)
	if err != nil {
		return err
	}
	defer client.Close()
	rm, err := openReadModel(o, client)
	if err != nil {
		return err
	}
	live, err := rm.reader.Live(ctx)
	if err != nil {
		return err
	}
	c, err := live.CloseMonth(ctx, o.month, mabis.CloseConfig{CorrectionWindow: o.correctionWindow})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s of tenant %s in %s: %s at %s (correction window %s); %d per-MaLo keys dropped; the balance-group series remain\n",
		c.Month, o.tenant, live.ReadModel(), c.State, c.ClosedAt.Format(time.RFC3339), c.CorrectionWindow, c.DroppedKeys)
	return nil
}

// workerOptions make "billing worker" a main of the worker runtime: one
// replica of the billing projection, a member of the projection's consumer
// group that applies its partitions' events to the read model, with
// /healthz, /readyz, /metrics (the runtime's) and the API on one HTTP
// server. The runtime reads the PROJECTOR_* settings, opens Redis and the
// checkpoint store, runs every version of the read model that needs it (the
// live one and, while projectorctl rebuild runs, the one built beside it)
// and shuts down within PROJECTOR_SHUTDOWN_TIMEOUT on SIGTERM.
func workerOptions(stdout, stderr io.Writer) worker.Options {
	return worker.Options{
		Name:        "billing worker",
		ServiceName: "projector-billing",
		Defaults:    map[string]string{projectorconfig.Topic.Env: "mabis.process-events", projectorconfig.Projection.Env: mabis.ProjectionName},
		Vars:        []projectorconfig.Var{tenantVar},
		Stdout:      stdout,
		Stderr:      stderr,
		Setup:       setupWorker,
	}
}

// setupWorker builds the billing read model on the worker's store and
// mounts the API, whose status reports the worker's runner and the group's
// lag.
func setupWorker(ctx context.Context, w *worker.Worker) (worker.Projection, error) {
	cfg := w.Config
	rm, err := newReadModel(w.Redis, w.Store, cfg.Projection, w.Settings.String(tenantVar))
	if err != nil {
		return worker.Projection{}, err
	}
	// A read model of an older layout stops the worker here, before it
	// writes anything (docs/compatibility.md).
	if err := mabis.CheckLayout(ctx, rm.projection); err != nil {
		return worker.Projection{}, err
	}
	cl, err := w.KafkaClient()
	if err != nil {
		return worker.Projection{}, err
	}
	adm := kadm.NewClient(cl)
	w.Defer(adm.Close)
	status, err := ops.New(ops.Config{Admin: w.Store, Kafka: adm, Topic: cfg.Topic, Group: cfg.Group})
	if err != nil {
		return worker.Projection{}, err
	}
	h, err := api.New(api.Config{Reader: rm.reader, Logger: w.Logger, WaitFor: func(ctx context.Context, id string, seq uint64) (string, error) {
		return rm.store.WaitFor(ctx, cfg.Projection, id, seq)
	}, Status: statusOf(status, cfg.Projection, w.Runners, nil)})
	if err != nil {
		return worker.Projection{}, err
	}
	w.Handle("/api/", h)
	if w.Console != nil { // PROJECTOR_CONSOLE: the billing pages beside the operations pages
		w.Console.AddLinks(pages.Links(w.Console.Prefix())...)
		month := mabis.DayOf(time.Now()).BillingMonth()
		// A Store that only reads (no guard): a MaLo's page shows its
		// stream's events (corrections, clearing cases) beside the read
		// model's assignments and days.
		events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cfg.Brokers, Topic: cfg.Topic, ClientOpts: w.KafkaOpts,
			Logger: w.Logger, DontCreateTopics: true})
		if err != nil {
			return worker.Projection{}, err
		}
		w.Defer(events.Close)
		if err := pages.Register(pages.Config{Console: w.Console, Reader: rm.reader, Month: month, Events: events}); err != nil {
			return worker.Projection{}, err
		}
	}
	return worker.Versioned(rm.projection), nil
}

func printGenerated(out io.Writer, x *loadgen.Expected, s loadgen.Stats) {
	fmt.Fprintf(out, "appended %d streams, %d events (%.1f MB of payload) in %v\n", s.Streams, s.Events, float64(s.Bytes)/1e6, s.Duration.Round(time.Millisecond))
	fmt.Fprintf(out, "  %d supplier changes (%d recorded retroactively), %d supply begins, %d supply ends,\n  %d days with substitute values, %d corrections, %d clearing cases (%d resolved)\n",
		x.SupplierChanges, x.RetroactiveChanges, x.SupplyBegins, x.SupplyEnds, x.SubstituteDays, x.Corrections, x.ClearingOpened, x.ClearingResolved)
}

func printExpected(out io.Writer, x *loadgen.Expected) {
	fmt.Fprintf(out, "expected balance groups of %s:\n", x.Month)
	for _, eic := range x.EICs() {
		g := x.Groups[eic]
		fmt.Fprintf(out, "  %s  %-22s %5d MaLos  %18s  %6d substitute values\n", eic, g.Name, len(g.Assigned), mabis.FormatWh(g.EnergyWh()), g.SubstituteValues())
	}
}
