package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/projector-dev/projector/buildinfo"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/telemetry"
)

// stopSlack is how long past PROJECTOR_SHUTDOWN_TIMEOUT Run waits for the
// runner before it gives up on it (a projection stuck in Apply).
const stopSlack = 10 * time.Second

// UsageError is a command line or configuration that cannot work; Main
// exits with status 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Main runs the worker until SIGTERM or SIGINT and exits: status 0 after a
// clean shutdown (and for -h), 2 for a usage or configuration error, 1
// otherwise, with the error on stderr. A second signal ends the process at
// once.
func Main(opts Options) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal has its default effect: the process ends
	}()
	err := Run(ctx, os.Args[1:], opts)
	stop()
	if err == nil || errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	name := opts.Name
	if name == "" {
		name = filepath.Base(os.Args[0])
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if errors.As(err, new(*UsageError)) {
		os.Exit(2)
	}
	os.Exit(1)
}

// Run runs the worker until ctx is done (the caller's signal), then shuts
// it down within PROJECTOR_SHUTDOWN_TIMEOUT. args is the command line
// without the program's name; a first argument "worker" is skipped, so
// that one image convention (entrypoint, then "worker", the chart's
// default arguments) fits a main that only runs the worker and one with
// subcommands alike. -h and -version (which prints the build, see package
// buildinfo) return flag.ErrHelp; a usage or configuration
// error is a *UsageError naming every problem.
func Run(ctx context.Context, args []string, opts Options) error {
	if opts.Setup == nil {
		return errors.New("worker: Options.Setup is required")
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if len(args) > 0 && args[0] == "worker" {
		args = args[1:]
	}
	set, cfg, err := parse(args, opts)
	if err != nil {
		return err
	}
	if opts.Name == "" {
		opts.Name = cfg.Projection + " worker"
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "projector-" + cfg.Projection
	}
	logger, err := telemetry.NewLogger(opts.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return &UsageError{Err: err}
	}
	redischeckpoint.SetLogger(logger)

	kafkaOpts, err := KafkaSecurity(cfg).Opts()
	if err != nil {
		return &UsageError{Err: err}
	}
	client, err := redischeckpoint.NewClient(RedisClientConfig(cfg))
	if err != nil {
		return &UsageError{Err: err}
	}
	defer client.Close()
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: cfg.RedisNamespace, Logger: logger, WaitReplicas: cfg.RedisWaitReplicas})
	if err != nil {
		return &UsageError{Err: err}
	}
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: opts.ServiceName, Logger: logger})
	if err != nil {
		return &UsageError{Err: err}
	}
	defer func() {
		// Export errors are logged by telemetry: nothing else to do on the way out.
		flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(flush)
	}()

	w := &Worker{Config: cfg, Settings: set, Logger: logger, Telemetry: tel, Redis: client, Store: store, KafkaOpts: kafkaOpts, mux: http.NewServeMux()}
	defer w.close()
	// The runtime's routes first: a program that mounts one of them again
	// learns it from the ServeMux's panic in Setup.
	var health http.Handler = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, `{"status":"unavailable","error":"starting"}`, http.StatusServiceUnavailable)
	})
	healthz := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) { health.ServeHTTP(rw, req) })
	w.mux.Handle("GET /healthz", healthz)
	w.mux.Handle("GET /readyz", healthz)
	w.mux.Handle("GET /metrics", tel.PrometheusHandler())
	if cfg.Console {
		if err := w.newConsole(); err != nil {
			return fmt.Errorf("console: %w", err)
		}
	}

	p, err := opts.Setup(ctx, w)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	rcfg := kafkarunner.Config{
		Seeds: cfg.Brokers, ClientOpts: kafkaOpts[:len(kafkaOpts):len(kafkaOpts)], SessionTimeout: cfg.KafkaSessionTimeout,
		InstanceID: cfg.KafkaInstanceID, ServerSideBalancer: cfg.KafkaGroupProtocol == "consumer",
		Topic: cfg.Topic, Group: cfg.Group, Checkpoints: store, ShutdownTimeout: cfg.ShutdownTimeout, Logger: logger,
		TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(), EventSpans: eventSpans(cfg.TraceEventSpans),
	}
	if err := w.newRunner(p, rcfg); err != nil {
		return err
	}
	health = w.runner.Handler()
	return w.serve(ctx, opts)
}

// parse reads the command line and the environment into the Set and the
// checked Config.
func parse(args []string, opts Options) (*projectorconfig.Set, projectorconfig.Config, error) {
	set := projectorconfig.NewSet(projectorconfig.Worker()...)
	set.Add(opts.Vars...)
	byEnv := map[string]projectorconfig.Var{}
	for _, v := range set.Vars() {
		byEnv[v.Env] = v
	}
	for env, def := range opts.Defaults {
		v, ok := byEnv[env]
		if !ok {
			return nil, projectorconfig.Config{}, fmt.Errorf("worker: Options.Defaults names %s, which is no setting", env)
		}
		set.SetDefault(v, def)
	}
	name := opts.Name
	if name == "" {
		name = filepath.Base(os.Args[0])
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	set.Bind(fs)
	showVersion := fs.Bool("version", false, "print the build's version and exit")
	checkConfig := fs.Bool("check-config", false,
		"check the settings (flags, PROJECTOR_* and OTEL_* variables, certificate files) and exit: 0 when they hold, 2 naming every problem; connects to nothing")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [worker] [flags]\n\nRuns a replica of the projection until SIGTERM. Every flag falls back to the variable named in its help; passwords are read from PROJECTOR_KAFKA_PASSWORD and PROJECTOR_REDIS_PASSWORD only. OTEL_* variables configure telemetry.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, projectorconfig.Config{}, err
		}
		return nil, projectorconfig.Config{}, &UsageError{Err: err}
	}
	if *showVersion {
		fmt.Fprintf(opts.Stdout, "%s %s\n", name, buildinfo.Get())
		return nil, projectorconfig.Config{}, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, projectorconfig.Config{}, &UsageError{Err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	cfg, err := set.Config()
	errs := []error{err}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka: set -brokers or PROJECTOR_KAFKA_BROKERS"))
	}
	if !cfg.HasRedis() {
		errs = append(errs, errors.New("no Redis: set -redis-url or PROJECTOR_REDIS_URL (or -redis-addrs, for Sentinel or Cluster)"))
	}
	if cfg.Topic == "" {
		errs = append(errs, errors.New("no topic: set -topic or PROJECTOR_TOPIC"))
	}
	if cfg.Projection == "" {
		errs = append(errs, errors.New("no projection name: set -projection or PROJECTOR_PROJECTION"))
	}
	if *checkConfig {
		// Every problem at once: the files and OTEL_* variables too.
		errs = append(errs, check(cfg))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, projectorconfig.Config{}, &UsageError{Err: err}
	}
	if *checkConfig {
		fmt.Fprintf(opts.Stdout, "%s: configuration ok (projection %s, topic %s)\n", name, cfg.Projection, cfg.Topic)
		return nil, projectorconfig.Config{}, flag.ErrHelp
	}
	return set, cfg, nil
}

// check makes what Run makes from cfg before it connects (the logger, the
// Kafka security options, the Redis client, the telemetry settings) and
// returns every error: what -check-config reports.
func check(cfg projectorconfig.Config) error {
	var errs []error
	if _, err := telemetry.NewLogger(io.Discard, cfg.LogFormat, cfg.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if _, err := KafkaSecurity(cfg).Opts(); err != nil {
		errs = append(errs, err)
	}
	if cfg.HasRedis() {
		if client, err := redischeckpoint.NewClient(RedisClientConfig(cfg)); err != nil {
			errs = append(errs, err)
		} else {
			_ = client.Close() // never used: go-redis connects on the first command
		}
	}
	errs = append(errs, telemetry.CheckEnv())
	return errors.Join(errs...)
}

// eventSpans maps PROJECTOR_TRACE_EVENT_SPANS (checked by projectorconfig)
// to the runner's setting.
func eventSpans(v string) kafkarunner.EventSpans {
	switch v {
	case "always":
		return kafkarunner.EventSpansAlways
	case "off":
		return kafkarunner.EventSpansOff
	}
	return kafkarunner.EventSpansSampled
}
