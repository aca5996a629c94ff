package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// readModel is the billing projection on a Redis and a reader of it.
type readModel struct {
	client     redis.UniversalClient
	store      *redischeckpoint.Store
	projection *redischeckpoint.AtomicProjection
	reader     *mabis.Reader
}

func openReadModel(o options, client redis.UniversalClient) (*readModel, error) {
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Logger: o.logger})
	if err != nil {
		return nil, err
	}
	p, err := mabis.NewProjection(store, o.projection)
	if err != nil {
		return nil, err
	}
	reader, err := mabis.NewReader(p, o.tenant)
	if err != nil {
		return nil, err
	}
	return &readModel{client: client, store: store, projection: p, reader: reader}, nil
}

func redisClient(o options) (redis.UniversalClient, error) {
	if o.redisURL == "" {
		return nil, errors.New("no Redis: set -redis or PROJECTOR_REDIS_URL")
	}
	return redischeckpoint.NewClient(redischeckpoint.ClientConfig{URL: o.redisURL})
}

func openEvents(ctx context.Context, o options) (*kafkastore.Store, error) {
	if len(o.brokers) == 0 {
		return nil, errors.New("no Kafka: set -brokers or PROJECTOR_KAFKA_BROKERS")
	}
	return kafkastore.New(ctx, kafkastore.Config{Seeds: o.brokers, Topic: o.topic, Partitions: int32(o.partitions), Logger: o.logger})
}

// generate appends a generated month to the topic.
func generate(ctx context.Context, o options, out io.Writer) error {
	events, err := openEvents(ctx, o)
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
	h, err := api.New(api.Config{Reader: rm.reader, Logger: o.logger, Status: func(ctx context.Context) (api.Status, error) {
		return api.Status{Projection: o.projection, State: "not run by this process", UpdatedAt: time.Now().UTC()}, nil
	}})
	if err != nil {
		return err
	}
	return serveHTTP(ctx, o.httpAddr, h, func(addr string) {
		fmt.Fprintf(out, "billing API for tenant %s: %s/api/v1/months/%s/balance-groups\n", o.tenant, apiURL(addr), o.month)
	})
}

// worker is one replica of the billing projection: a member of the
// projection's consumer group that applies its partitions' events to the
// read model, with /healthz, /readyz and the API on one HTTP server.
func worker(ctx context.Context, o options, out io.Writer) error {
	client, err := redisClient(o)
	if err != nil {
		return err
	}
	defer client.Close()
	rm, err := openReadModel(o, client)
	if err != nil {
		return err
	}
	if len(o.brokers) == 0 {
		return errors.New("no Kafka: set -brokers or PROJECTOR_KAFKA_BROKERS")
	}
	runner, err := kafkastore.NewRunner(kafkastore.RunnerConfig{
		Seeds: o.brokers, Topic: o.topic, Projection: rm.projection, Checkpoints: rm.store, Logger: o.logger,
	})
	if err != nil {
		return err
	}
	h, err := api.New(api.Config{Reader: rm.reader, Logger: o.logger, Status: runnerStatus(o.projection, runner)})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", h)
	mux.Handle("/", runner.Handler())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpErr := make(chan error, 1)
	go func() {
		httpErr <- serveHTTP(ctx, o.httpAddr, mux, func(addr string) {
			fmt.Fprintf(out, "billing worker of %s on topic %s; API and health on %s\n", o.projection, o.topic, apiURL(addr))
		})
	}()
	err = runner.Run(ctx)
	cancel()
	return errors.Join(err, <-httpErr)
}

// runnerStatus reports a consumer-group runner's counters.
func runnerStatus(projection string, r *kafkastore.Runner) api.StatusFunc {
	return func(ctx context.Context) (api.Status, error) {
		s := r.Stats()
		st := api.Status{Projection: projection, State: "running", Applied: s.Applied, Skipped: s.Skipped, UpdatedAt: time.Now().UTC()}
		if err := r.Ready(ctx); err != nil {
			st.State = "not ready: " + err.Error()
		}
		parked, err := r.Parked(ctx)
		if err != nil {
			return st, err
		}
		st.Parked = len(parked)
		return st, nil
	}
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
