// Command billing runs the MaBiS balance-group settlement example: it
// generates a billing month of MaLo streams into Kafka, projects them into
// sum time series per balance group in Redis, and serves them as JSON.
//
//	billing [demo]     everything in one process, on in-process Kafka and Redis
//	billing generate   append a generated month to a Kafka topic
//	billing worker     run the "billing" projection from Kafka into Redis, with the API
//	billing api        serve the API over a Redis read model
//
// Every flag falls back to an environment variable, shown by -h; the
// passwords are read from PROJECTOR_KAFKA_PASSWORD and
// PROJECTOR_REDIS_PASSWORD only, so that they appear neither in the process
// list nor in -h.
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
	"github.com/projector-dev/projector/redischeckpoint"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "billing:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand; with no arguments it runs the demo.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "demo"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	commands := map[string]func(context.Context, options, io.Writer) error{
		"demo":     demo,
		"generate": generate,
		"worker":   worker,
		"api":      serveAPI,
	}
	fn, ok := commands[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q: want demo, generate, worker or api", cmd)
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
	tenant         string
	month          mabis.Month
	malos          int
	seed           uint64
	replicas       int
	shutdown       time.Duration
	logLevel       slog.Level
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

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func parseFlags(cmd string, args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("billing "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", envOr("PROJECTOR_KAFKA_BROKERS", ""), "Kafka seed brokers, comma-separated (PROJECTOR_KAFKA_BROKERS); demo: empty starts an in-process fake")
	topic := fs.String("topic", envOr("PROJECTOR_TOPIC", "mabis.process-events"), "event topic (PROJECTOR_TOPIC)")
	partitions := fs.String("partitions", envOr("PROJECTOR_PARTITIONS", "12"), "partitions of the event topic when it is created (PROJECTOR_PARTITIONS)")
	projection := fs.String("projection", envOr("PROJECTOR_PROJECTION", mabis.ProjectionName), "projection name: consumer group and Redis keys; renaming starts from scratch (PROJECTOR_PROJECTION)")
	redisURL := fs.String("redis", envOr("PROJECTOR_REDIS_URL", ""), "Redis URL, redis:// or rediss:// (PROJECTOR_REDIS_URL); demo: empty starts an in-process fake")
	httpAddr := fs.String("http", envOr("PROJECTOR_HTTP_ADDR", ":8080"), "HTTP listen address of the API (PROJECTOR_HTTP_ADDR)")
	tenant := fs.String("tenant", envOr("PROJECTOR_TENANT", "netz-musterstadt"), "tenant: the grid operator (PROJECTOR_TENANT)")
	month := fs.String("month", envOr("PROJECTOR_MONTH", "2026-03"), "billing month YYYY-MM (PROJECTOR_MONTH)")
	malos := fs.String("malos", envOr("PROJECTOR_MALOS", "2000"), "number of MaLos to generate (PROJECTOR_MALOS)")
	seed := fs.String("seed", envOr("PROJECTOR_SEED", "1"), "seed of the generated month (PROJECTOR_SEED)")
	group := fs.String("group", envOr("PROJECTOR_GROUP", ""), "consumer group; default: the projection name (PROJECTOR_GROUP)")
	sasl := fs.String("kafka-sasl-mechanism", envOr("PROJECTOR_KAFKA_SASL_MECHANISM", ""), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the password comes from PROJECTOR_KAFKA_PASSWORD (PROJECTOR_KAFKA_SASL_MECHANISM)")
	kafkaUser := fs.String("kafka-username", envOr("PROJECTOR_KAFKA_USERNAME", ""), "Kafka SASL user (PROJECTOR_KAFKA_USERNAME)")
	kafkaTLS := fs.String("kafka-tls", envOr("PROJECTOR_KAFKA_TLS", "false"), "connect to Kafka with TLS (PROJECTOR_KAFKA_TLS)")
	kafkaCA := fs.String("kafka-tls-ca", envOr("PROJECTOR_KAFKA_TLS_CA_FILE", ""), "PEM file of the CA of Kafka's certificates; implies -kafka-tls (PROJECTOR_KAFKA_TLS_CA_FILE)")
	redisUser := fs.String("redis-username", envOr("PROJECTOR_REDIS_USERNAME", ""), "Redis ACL user; the password comes from PROJECTOR_REDIS_PASSWORD (PROJECTOR_REDIS_USERNAME)")
	redisCA := fs.String("redis-tls-ca", envOr("PROJECTOR_REDIS_TLS_CA_FILE", ""), "PEM file of the CA of Redis's certificate, for a rediss:// URL (PROJECTOR_REDIS_TLS_CA_FILE)")
	namespace := fs.String("redis-namespace", envOr("PROJECTOR_REDIS_NAMESPACE", redischeckpoint.DefaultNamespace), "prefix of every Redis key (PROJECTOR_REDIS_NAMESPACE)")
	waitReplicas := fs.String("redis-wait-replicas", envOr("PROJECTOR_REDIS_WAIT_REPLICAS", "0"), "checkpoints wait until this many Redis replicas have them before offsets are committed, so a failover never loses what a commit relies on; 0: off (PROJECTOR_REDIS_WAIT_REPLICAS)")
	session := fs.String("kafka-session-timeout", envOr("PROJECTOR_KAFKA_SESSION_TIMEOUT", "45s"), "how long the group waits for a replica that stopped answering before its partitions move (PROJECTOR_KAFKA_SESSION_TIMEOUT)")
	replicas := fs.String("replicas", envOr("PROJECTOR_REPLICAS", "3"), "demo: runner replicas in the process (PROJECTOR_REPLICAS)")
	shutdown := fs.String("shutdown-timeout", envOr("PROJECTOR_SHUTDOWN_TIMEOUT", "30s"), "time to finish the batch, store cursors, commit and leave the group after SIGTERM (PROJECTOR_SHUTDOWN_TIMEOUT)")
	logLevel := fs.String("log-level", envOr("PROJECTOR_LOG_LEVEL", ""), "debug, info, warn or error; default warn for the demo, info otherwise (PROJECTOR_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())
	}
	var o options
	o.malosSet = os.Getenv("PROJECTOR_MALOS") != ""
	fs.Visit(func(f *flag.Flag) { o.malosSet = o.malosSet || f.Name == "malos" })
	o.topic, o.projection, o.redisURL, o.httpAddr, o.tenant = *topic, *projection, *redisURL, *httpAddr, *tenant
	o.group, o.redisUser, o.redisPass, o.redisCA, o.namespace = *group, *redisUser, os.Getenv("PROJECTOR_REDIS_PASSWORD"), *redisCA, *namespace
	o.kafka = kafkastore.Security{SASLMechanism: strings.ToUpper(*sasl), Username: *kafkaUser, Password: os.Getenv("PROJECTOR_KAFKA_PASSWORD"), CAFile: *kafkaCA}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.brokers = append(o.brokers, b)
		}
	}
	var errs []error
	var err error
	if o.month, err = mabis.ParseMonth(*month); err != nil {
		errs = append(errs, fmt.Errorf("-month: %w", err))
	}
	if o.malos, err = strconv.Atoi(*malos); err != nil || o.malos < 1 {
		errs = append(errs, fmt.Errorf("-malos %q: want a positive number", *malos))
	}
	if o.waitReplicas, err = strconv.Atoi(*waitReplicas); err != nil || o.waitReplicas < 0 {
		errs = append(errs, fmt.Errorf("-redis-wait-replicas %q: want 0 or a positive number", *waitReplicas))
	}
	if o.partitions, err = strconv.Atoi(*partitions); err != nil || o.partitions < 1 {
		errs = append(errs, fmt.Errorf("-partitions %q: want a positive number", *partitions))
	}
	if o.seed, err = strconv.ParseUint(*seed, 10, 64); err != nil || o.seed == 0 {
		errs = append(errs, fmt.Errorf("-seed %q: want a positive number", *seed))
	}
	if o.kafka.TLS, err = strconv.ParseBool(*kafkaTLS); err != nil {
		errs = append(errs, fmt.Errorf("-kafka-tls %q: want true or false", *kafkaTLS))
	}
	o.kafka.TLS = o.kafka.TLS || o.kafka.CAFile != ""
	if o.kafka.SASLMechanism != "" && (o.kafka.Username == "" || o.kafka.Password == "") {
		errs = append(errs, fmt.Errorf("-kafka-sasl-mechanism %s needs -kafka-username and PROJECTOR_KAFKA_PASSWORD", o.kafka.SASLMechanism))
	}
	if o.sessionTimeout, err = time.ParseDuration(*session); err != nil || o.sessionTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-kafka-session-timeout %q: want a positive duration such as 45s", *session))
	}
	if o.replicas, err = strconv.Atoi(*replicas); err != nil || o.replicas < 1 {
		errs = append(errs, fmt.Errorf("-replicas %q: want a positive number", *replicas))
	}
	if o.shutdown, err = time.ParseDuration(*shutdown); err != nil || o.shutdown <= 0 {
		errs = append(errs, fmt.Errorf("-shutdown-timeout %q: want a positive duration such as 25s", *shutdown))
	}
	o.logLevel = slog.LevelInfo
	if cmd == "demo" {
		o.logLevel = slog.LevelWarn
	}
	if *logLevel != "" {
		if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
			errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel))
		}
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
func apiURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
