// Command billing runs the MaBiS balance-group settlement example: it
// generates a billing month of MaLo streams into Kafka, projects them into
// sum time series per balance group in Redis, and serves them as JSON.
//
//	billing [demo]     everything in one process, on in-process Kafka and Redis
//	billing generate   append a generated month to a Kafka topic
//	billing worker     run the "billing" projection from Kafka into Redis, with the API
//	billing api        serve the API over a Redis read model
//	billing close-month drop a month's per-MaLo detail after its correction window
//
// Every flag falls back to an environment variable, shown by -h: the
// shared PROJECTOR_* table of package projectorconfig (the names
// projectorctl reads) plus the example's own. The passwords are read from
// PROJECTOR_KAFKA_PASSWORD and PROJECTOR_REDIS_PASSWORD only, so that they
// appear neither in the process list nor in -h. "billing worker" is a main
// of package worker, the runtime a projection of your own runs on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "billing:", err)
		if errors.As(err, new(*worker.UsageError)) {
			os.Exit(2) // a usage or configuration error, as worker.Main exits
		}
		os.Exit(1)
	}
}

// run dispatches to a subcommand; with no arguments it runs the demo.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "demo"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "worker" {
		// The worker is a main of the worker runtime, like a user's.
		return worker.Run(ctx, args, workerOptions(stdout, stderr))
	}
	commands := map[string]func(context.Context, options, io.Writer) error{
		"demo":        demo,
		"generate":    generate,
		"api":         serveAPI,
		"close-month": closeMonth,
	}
	fn, ok := commands[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q: want demo, generate, worker, api or close-month", cmd)
	}
	opts, err := parseFlags(cmd, args, stderr)
	if err != nil {
		return err
	}
	return fn(ctx, opts, stdout)
}

// options are the flags of every subcommand; each uses what it needs.
type options struct {
	brokers    []string
	topic      string
	partitions int
	projection string
	// group is the consumer group; empty means the projection's name.
	group     string
	kafka     kafkastore.Security
	redisURL  string
	redisUser string
	redisPass string
	redisCA   string
	namespace string
	// waitReplicas is redischeckpoint.Config.WaitReplicas.
	waitReplicas int
	// sessionTimeout is the consumer group session timeout; 0 is
	// franz-go's default (45s).
	sessionTimeout time.Duration
	httpAddr       string
	// consoleToken is the console's admin token (a secret).
	consoleToken string
	tenant       string
	month        mabis.Month
	malos        int
	seed         uint64
	replicas     int
	shutdown     time.Duration
	logLevel     slog.Level
	// correctionWindow is close-month's mabis.CloseConfig.CorrectionWindow.
	correctionWindow time.Duration
	// malosSet says whether -malos or PROJECTOR_MALOS was given.
	malosSet bool
	logger   *slog.Logger
}

// groupName returns the consumer group the replicas share.
func (o options) groupName() string {
	if o.group != "" {
		return o.group
	}
	return o.projection
}

// The billing example's own settings, beside the shared PROJECTOR_* table
// of package projectorconfig (brokers, topic, Redis, ...), which every
// subcommand reads with the same names as projectorctl and the worker
// runtime.
var (
	partitionsVar = projectorconfig.Var{Env: "PROJECTOR_PARTITIONS", Flag: "partitions", Kind: projectorconfig.Int, Default: "12",
		Help: "partitions of the event topic when it is created"}
	tenantVar = projectorconfig.Var{Env: "PROJECTOR_TENANT", Flag: "tenant", Default: "netz-musterstadt",
		Help: "tenant: the grid operator"}
	monthVar = projectorconfig.Var{Env: "PROJECTOR_MONTH", Flag: "month", Default: "2026-03",
		Help: "billing month YYYY-MM"}
	malosVar = projectorconfig.Var{Env: "PROJECTOR_MALOS", Flag: "malos", Kind: projectorconfig.Int, Default: "2000",
		Help: "number of MaLos to generate"}
	seedVar = projectorconfig.Var{Env: "PROJECTOR_SEED", Flag: "seed", Default: "1",
		Help: "seed of the generated month"}
	replicasVar = projectorconfig.Var{Env: "PROJECTOR_REPLICAS", Flag: "replicas", Kind: projectorconfig.Int, Default: "3",
		Help: "demo: runner replicas in the process"}
	correctionWindowVar = projectorconfig.Var{Env: "PROJECTOR_CORRECTION_WINDOW", Flag: "correction-window", Kind: projectorconfig.Duration,
		Default: mabis.DefaultCorrectionWindow.String(), Help: "close-month: how long after its end a month stays open for corrections"}
)

// settings returns the settings of cmd: the shared table with billing's
// defaults, and billing's own.
func settings(cmd string) *projectorconfig.Set {
	set := projectorconfig.NewSet(projectorconfig.Worker()...)
	set.Add(partitionsVar, tenantVar, monthVar, malosVar, seedVar, replicasVar, correctionWindowVar)
	set.SetDefault(projectorconfig.Topic, "mabis.process-events")
	set.SetDefault(projectorconfig.Projection, mabis.ProjectionName)
	if cmd == "demo" {
		set.SetDefault(projectorconfig.LogLevel, "warn")
	}
	return set
}

func parseFlags(cmd string, args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("billing "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	set := settings(cmd)
	set.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())
	}
	cfg, err := set.Config()
	errs := []error{err}
	o := options{
		brokers: cfg.Brokers, topic: cfg.Topic, projection: cfg.Projection, group: cfg.Group,
		kafka:    worker.KafkaSecurity(cfg),
		redisURL: cfg.RedisURL, redisUser: cfg.RedisUsername, redisPass: cfg.RedisPassword, redisCA: cfg.RedisTLSCAFile,
		namespace: cfg.RedisNamespace, waitReplicas: cfg.RedisWaitReplicas, sessionTimeout: cfg.KafkaSessionTimeout,
		httpAddr: cfg.HTTPAddr, consoleToken: cfg.ConsoleAdminToken, shutdown: cfg.ShutdownTimeout, logLevel: cfg.LogLevel,
		tenant: set.String(tenantVar), malosSet: set.IsSet(malosVar),
	}
	positive := func(v projectorconfig.Var, dst *int) {
		if n, err := set.Int(v); err != nil || n < 1 {
			errs = append(errs, set.Invalid(v, "a positive number"))
		} else {
			*dst = n
		}
	}
	positive(malosVar, &o.malos)
	positive(partitionsVar, &o.partitions)
	positive(replicasVar, &o.replicas)
	if o.month, err = mabis.ParseMonth(set.String(monthVar)); err != nil {
		errs = append(errs, set.Invalid(monthVar, "a month YYYY-MM"))
	}
	if o.correctionWindow, err = set.Duration(correctionWindowVar); err != nil || o.correctionWindow < 0 {
		errs = append(errs, set.Invalid(correctionWindowVar, "a duration of 0 or more"))
	}
	if o.seed, err = strconv.ParseUint(set.String(seedVar), 10, 64); err != nil || o.seed == 0 {
		errs = append(errs, set.Invalid(seedVar, "a positive number"))
	}
	o.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	return o, errors.Join(errs...)
}

// serveHTTP serves h on addr until ctx is done, then shuts down gracefully
// within timeout. ready is called with the listening address once the
// listener is open.
func serveHTTP(ctx context.Context, addr string, timeout time.Duration, h http.Handler, ready func(addr string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ready(ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// apiURL turns a listening address into a URL people can open.
func apiURL(addr string) string { return worker.URL(addr) }
