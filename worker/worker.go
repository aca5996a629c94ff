package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/telemetry"
)

// Options describe a worker program.
type Options struct {
	// Name names the program in -h, in errors and in its start line.
	// Default: the projection's name followed by " worker".
	Name string
	// ServiceName is OpenTelemetry's service.name unless OTEL_SERVICE_NAME
	// is set. Default: "projector-" and the projection's name.
	ServiceName string
	// Defaults replace defaults of the table, keyed by the variable
	// (projectorconfig.Var.Env): typically PROJECTOR_PROJECTION and
	// PROJECTOR_TOPIC. A key that names no setting is an error.
	Defaults map[string]string
	// Vars are the program's own settings, parsed and shown in -h with the
	// table's; Setup reads them from Worker.Settings.
	Vars []projectorconfig.Var
	// Setup builds the projection on the worker's connections, and may
	// mount HTTP handlers (Worker.Handle) and open clients of its own
	// (Worker.KafkaClient). Required. It runs once, before the runner
	// starts; an error ends Run.
	Setup func(ctx context.Context, w *Worker) (Projection, error)
	// Stdout receives the start line, Stderr the log and -h. Defaults:
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
}

// Projection is what a worker runs: give exactly one of the fields.
type Projection struct {
	// Versions returns the projection of a read-model version given its
	// versioned name ("orders", "orders@v3"); the worker then runs a
	// kafkarunner.VersionedRunner, which keeps the live version and builds
	// the next one beside it while projectorctl rebuild runs. See
	// Versioned for a redischeckpoint.AtomicProjection.
	Versions func(versionedName string) (framework.Projection, error)
	// Single is a projection with one read model, run by a
	// kafkarunner.Runner: projectorctl replay works, rebuild does not.
	Single framework.Projection
}

// Versioned returns the Projection of an AtomicProjection and its versions.
func Versioned(p *redischeckpoint.AtomicProjection) Projection {
	return Projection{Versions: func(name string) (framework.Projection, error) {
		v, err := p.Version(name)
		if err != nil {
			return nil, err
		}
		return v, nil
	}}
}

// Worker is what Setup builds on: the configuration and the connections
// the runtime opened. The runtime closes them after Run.
type Worker struct {
	// Config is the table's settings, checked.
	Config projectorconfig.Config
	// Settings holds every setting, Options.Vars included: read the
	// program's own with Settings.String(v), Int(v)...
	Settings *projectorconfig.Set
	// Logger writes to Options.Stderr at PROJECTOR_LOG_LEVEL.
	Logger *slog.Logger
	// Telemetry has the tracer and meter providers; its meters are served
	// on /metrics.
	Telemetry *telemetry.Telemetry
	// Redis is the client of PROJECTOR_REDIS_URL; Store the checkpoint
	// store on it, in PROJECTOR_REDIS_NAMESPACE.
	Redis redis.UniversalClient
	Store *redischeckpoint.Store
	// KafkaOpts are the franz-go options of the configured SASL and TLS,
	// without the seed brokers (see KafkaClient).
	KafkaOpts []kgo.Opt
	// Console is the web console under /console/ when PROJECTOR_CONSOLE
	// is set (nil otherwise): Setup may add pages of its own to it
	// (Console.Handle, Console.Render).
	Console *console.Console

	mux     *http.ServeMux
	closers []func()
	runner  runner
	single  *kafkarunner.Runner
	version *kafkarunner.VersionedRunner
}

// runner is what the worker needs of a Runner or a VersionedRunner.
type runner interface {
	Run(ctx context.Context) error
	Handler() http.Handler
	ReplicaID() string
}

// Handle mounts h on the worker's HTTP server (http.ServeMux patterns,
// e.g. "/api/" or "GET /api/v1/status"). GET /healthz, GET /readyz and
// GET /metrics are taken; registering them again panics, as ServeMux does.
func (w *Worker) Handle(pattern string, h http.Handler) { w.mux.Handle(pattern, h) }

// Defer registers f to run when Run returns, after the runner and the
// HTTP server stopped and before the Redis client is closed; the last
// registered runs first. For what Setup opens (an admin client).
func (w *Worker) Defer(f func()) { w.closers = append(w.closers, f) }

func (w *Worker) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// KafkaClient returns a new client of the configured brokers with the
// configured SASL and TLS, and opts; the caller closes it.
func (w *Worker) KafkaClient(opts ...kgo.Opt) (*kgo.Client, error) {
	all := append([]kgo.Opt{kgo.SeedBrokers(w.Config.Brokers...)}, w.KafkaOpts...)
	return kgo.NewClient(append(all, opts...)...)
}

// Runners returns the runner of the live read-model version (none before
// it started), for status pages. Call it per request: a rebuild replaces
// the runner.
func (w *Worker) Runners() []*kafkarunner.Runner {
	switch {
	case w.version != nil:
		if r := w.version.Live(); r != nil {
			return []*kafkarunner.Runner{r}
		}
	case w.single != nil:
		return []*kafkarunner.Runner{w.single}
	}
	return nil
}

// ReplicaID names this replica in reports ("" before Setup returned).
func (w *Worker) ReplicaID() string {
	if w.runner == nil {
		return ""
	}
	return w.runner.ReplicaID()
}

// newRunner builds the runner of p.
func (w *Worker) newRunner(p Projection, cfg kafkarunner.Config) error {
	switch {
	case (p.Versions == nil) == (p.Single == nil):
		return errors.New("worker: Setup must return a Projection with exactly one of Versions and Single")
	case p.Versions != nil:
		r, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{Name: w.Config.Projection, NewProjection: p.Versions, Runner: cfg})
		if err != nil {
			return err
		}
		w.version, w.runner = r, r
	default:
		if name := p.Single.Name(); name != w.Config.Projection {
			return fmt.Errorf("worker: Setup returned projection %q, but the configured projection (PROJECTOR_PROJECTION) is %q", name, w.Config.Projection)
		}
		cfg.Projection = p.Single
		r, err := kafkarunner.New(cfg)
		if err != nil {
			return err
		}
		w.single, w.runner = r, r
	}
	return nil
}
