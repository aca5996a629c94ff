package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/projector-dev/projector/framework"
)

// CheckpointStore keeps the runner's cursors. Cursors looks up many streams
// in one round trip. redischeckpoint.Store implements it.
type CheckpointStore interface {
	framework.ProjectionCheckpointStore
	Cursors(ctx context.Context, name string, streamIDs []string) (map[string]uint64, error)
}

// Fencer hands out fencing tokens per (projection, partition); writes made
// with a context carrying the fence ([framework.WithFence]) fail once a
// newer token exists. redischeckpoint.Store implements it. Errors of a
// fenced write must have a method Fenced() bool that returns true.
type Fencer interface {
	AcquireFence(ctx context.Context, projection string, partition int32) (framework.Fence, error)
}

// ParkStore keeps parked streams where every replica and the admin command
// see them. redischeckpoint.Store implements it; without one the runner
// keeps them in memory (lost on restart: only for tests and demos).
type ParkStore interface {
	Park(ctx context.Context, projection string, p framework.ParkedStream) error
	Parked(ctx context.Context, projection string) ([]framework.ParkedStream, error)
	Unpark(ctx context.Context, projection string, r framework.Resolution) (bool, error)
}

// ControlStore is the shared control plane of a projection's replicas:
// pause and resume, resets of the read model for replays, and the replicas'
// reports for status. redischeckpoint.Store implements it.
type ControlStore interface {
	Control(ctx context.Context, projection string) (framework.Control, error)
	ClaimReset(ctx context.Context, projection string, epoch uint64, replica string, ttl time.Duration) (bool, error)
	CompleteReset(ctx context.Context, projection string, epoch uint64) error
	Heartbeat(ctx context.Context, projection string, info framework.ReplicaInfo) error
	RemoveReplica(ctx context.Context, projection, id string) error
}

// Pinger is implemented by stores that can tell whether they are
// reachable; readiness uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// RetryPolicy says how often and how patiently a failing apply is retried
// before its stream is parked.
type RetryPolicy struct {
	Attempts   int           // tries in all, including the first; default 5
	Initial    time.Duration // first backoff; default 100ms
	Max        time.Duration // longest backoff; default 5s
	Multiplier float64       // default 2
}

func (p *RetryPolicy) setDefaults() {
	if p.Attempts == 0 {
		p.Attempts = 5
	}
	if p.Initial == 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max == 0 {
		p.Max = 5 * time.Second
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
}

func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := float64(p.Initial)
	for range attempt - 1 {
		d *= p.Multiplier
	}
	return min(time.Duration(d), p.Max)
}

// RunnerConfig configures a [Runner]. Zero fields mean their documented
// default.
type RunnerConfig struct {
	// Seeds are the brokers (required); ClientOpts pass through to the
	// franz-go client (SASL, TLS, kotel hooks...). See [Security].
	Seeds      []string
	ClientOpts []kgo.Opt
	// Topic is the event topic (required).
	Topic string
	// Projection is applied to every event (required). If it implements
	// framework.BatchApplier, it receives a partition's batch at once.
	Projection framework.Projection
	// Checkpoints keeps the cursors (required). For exactly-once effects
	// the cursors must be stored with the read model: use the store of a
	// redischeckpoint.AtomicProjection, whose scripts write both.
	Checkpoints CheckpointStore
	// Fencer guards every write per partition. Default: Checkpoints, if
	// it implements Fencer.
	Fencer Fencer
	// Parked keeps parked streams. Default: Checkpoints, if it implements
	// ParkStore; else memory.
	Parked ParkStore
	// Control is watched for pause, resume and replay. Default:
	// Checkpoints, if it implements ControlStore; else none (the runner
	// cannot be paused or replayed from outside).
	Control ControlStore
	// ControlRefresh is how often the control state is read and the
	// replica's report written. Default 1s.
	ControlRefresh time.Duration
	// ReplicaID names this replica in reports. Default: host name, process
	// ID and a random suffix.
	ReplicaID string
	// Events reads a stream again when it is resumed after parking.
	// Default: a Store on Topic made by the runner.
	Events framework.EventStore

	// Group is the consumer group. Default: the projection's name.
	// Renaming the projection therefore changes the group (and the keys of
	// its cursors): the renamed projection starts from the beginning.
	Group string
	// BatchSize is the most records polled at once. Default 1000.
	BatchSize int
	// FlushInterval is the longest time applied cursors wait before they
	// are stored and the offsets committed. Default 1s.
	FlushInterval time.Duration
	// ParkedRefresh is how often workers look for streams an admin
	// resumed. Default 2s.
	ParkedRefresh time.Duration
	// Retry is the policy for a failing apply.
	Retry RetryPolicy
	// DeadLetterTopic receives each parked event with the reason in its
	// headers. Default Topic+".dead-letter"; created when missing.
	DeadLetterTopic string
	// ServerSideBalancer selects the KIP-848 consumer protocol instead of
	// the classic protocol with cooperative-sticky balancing.
	ServerSideBalancer bool
	// ShutdownTimeout bounds the graceful shutdown after ctx is cancelled:
	// finish the batch, store cursors, commit, leave the group. Default 30s.
	ShutdownTimeout time.Duration

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

func (c *RunnerConfig) setDefaults() {
	if c.Group == "" && c.Projection != nil {
		c.Group = c.Projection.Name()
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.ParkedRefresh == 0 {
		c.ParkedRefresh = 2 * time.Second
	}
	if c.ControlRefresh == 0 {
		c.ControlRefresh = time.Second
	}
	if c.ReplicaID == "" {
		c.ReplicaID = defaultReplicaID()
	}
	if c.Control == nil {
		c.Control, _ = c.Checkpoints.(ControlStore)
	}
	c.Retry.setDefaults()
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = c.Topic + ".dead-letter"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = tracenoop.NewTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = metricnoop.NewMeterProvider()
	}
	if c.Fencer == nil {
		c.Fencer, _ = c.Checkpoints.(Fencer)
	}
	if c.Parked == nil {
		if p, ok := c.Checkpoints.(ParkStore); ok {
			c.Parked = p
		} else {
			c.Parked = &memoryParkStore{}
		}
	}
}

// Validate reports every problem of c, joined.
func (c RunnerConfig) Validate() error {
	var errs []error
	if len(c.Seeds) == 0 {
		errs = append(errs, errors.New("kafkastore: RunnerConfig.Seeds is required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("kafkastore: RunnerConfig.Topic is required"))
	}
	if c.Projection == nil {
		errs = append(errs, errors.New("kafkastore: RunnerConfig.Projection is required"))
	} else if err := framework.ValidateProjectionName(c.Projection.Name()); err != nil {
		errs = append(errs, fmt.Errorf("kafkastore: RunnerConfig.Projection: %w", err))
	}
	if c.Checkpoints == nil {
		errs = append(errs, errors.New("kafkastore: RunnerConfig.Checkpoints is required"))
	}
	if c.DeadLetterTopic != "" && c.DeadLetterTopic == c.Topic {
		errs = append(errs, errors.New("kafkastore: RunnerConfig.DeadLetterTopic must differ from Topic: the runner never writes to the event topic"))
	}
	if c.BatchSize < 0 || c.FlushInterval < 0 || c.ShutdownTimeout < 0 || c.ParkedRefresh < 0 {
		errs = append(errs, errors.New("kafkastore: RunnerConfig sizes and durations must not be negative"))
	}
	if c.Retry.Attempts < 0 {
		errs = append(errs, fmt.Errorf("kafkastore: RunnerConfig.Retry.Attempts %d is negative", c.Retry.Attempts))
	}
	return errors.Join(errs...)
}

// ErrRunnerClosed is returned by Run once the runner has run.
var ErrRunnerClosed = errors.New("kafkastore: runner already ran")

// Runner is one replica of a projection: a member of the projection's
// consumer group with one worker goroutine per assigned partition. Start
// as many replicas (processes) as there are partitions at most; extra ones
// wait as hot standbys.
type Runner struct {
	cfg      RunnerConfig
	ran      atomic.Bool
	stopped  atomic.Bool
	crashed  atomic.Bool  // tests: stop as a crash would, committing nothing
	state    atomic.Value // string: running, paused, waiting-reset, resetting, stopped
	cancelMu sync.Mutex
	cancel   context.CancelFunc
	metrics  *runnerMetrics
	tracer   trace.Tracer
	// tracing is set when a TracerProvider was given: kotel on the
	// consumer then continues the producer's trace per record.
	tracing    bool
	propagator propagation.TextMapPropagator

	client *kgo.Client
	events framework.EventStore

	// workers maps assigned partitions to their workers. The group
	// callbacks run in the poll goroutine (BlockRebalanceOnPoll), but the
	// shutdown path runs beside a possible last rebalance: hence the lock.
	workersMu sync.Mutex
	workers   map[int32]*worker
	wg        sync.WaitGroup // worker goroutines

	joined     atomic.Bool
	assignedMu sync.Mutex
	assigned   []int32
	lastErr    atomic.Pointer[string]
}

// NewRunner checks cfg and returns a runner; Run starts it.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tracing := cfg.TracerProvider != nil
	cfg.setDefaults()
	r := &Runner{cfg: cfg, workers: map[int32]*worker{}, tracing: tracing}
	r.propagator = otel.GetTextMapPropagator()
	if len(r.propagator.Fields()) == 0 {
		r.propagator = propagation.TraceContext{}
	}
	r.tracer = cfg.TracerProvider.Tracer("github.com/projector-dev/projector/kafkastore")
	m, err := newRunnerMetrics(cfg.MeterProvider, r)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	return r, nil
}

// Group returns the consumer group the runner joins.
func (r *Runner) Group() string { return r.cfg.Group }

// Run consumes until ctx is cancelled, then shuts down gracefully within
// RunnerConfig.ShutdownTimeout: each worker finishes its batch, stores its
// cursors and commits; the client leaves the group. Run owns every goroutine
// it starts and returns after all have exited: nil after a clean shutdown,
// or the error that stopped it.
func (r *Runner) Run(ctx context.Context) error {
	if r.ran.Swap(true) {
		return ErrRunnerClosed
	}
	defer r.stopped.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancelMu.Lock()
	r.cancel = cancel
	r.cancelMu.Unlock()
	if r.cfg.Events == nil {
		store, err := New(ctx, Config{Seeds: r.cfg.Seeds, Topic: r.cfg.Topic, ClientOpts: r.cfg.ClientOpts, Logger: r.cfg.Logger, DontCreateTopics: true})
		if err != nil {
			return fmt.Errorf("kafkastore: runner %s: event store: %w", r.cfg.Group, err)
		}
		defer store.Close()
		r.events = store
	} else {
		r.events = r.cfg.Events
	}
	if err := r.ensureDeadLetterTopic(ctx); err != nil {
		return err
	}
	var background sync.WaitGroup
	defer background.Wait()
	if r.cfg.Control != nil {
		hbCtx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
		defer stopHeartbeat()
		background.Go(func() { r.heartbeat(hbCtx) })
	}

	r.cfg.Logger.InfoContext(ctx, "runner starting", "group", r.cfg.Group, "topic", r.cfg.Topic, "replica", r.cfg.ReplicaID)
	for {
		if err := r.waitRunnable(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		consumeCtx, stopConsuming := context.WithCancel(ctx)
		var watcher sync.WaitGroup
		if r.cfg.Control != nil {
			watcher.Go(func() { r.watchControl(consumeCtx, stopConsuming) })
		}
		r.state.Store("running")
		err := r.consume(consumeCtx)
		stopConsuming()
		watcher.Wait()
		if err != nil || ctx.Err() != nil || r.crashed.Load() {
			r.state.Store("stopped")
			r.cfg.Logger.InfoContext(ctx, "runner stopped", "group", r.cfg.Group, "err", err)
			return err
		}
		// Paused, or a reset of the read model was requested: consumption
		// stopped cleanly; wait until it may start again.
	}
}

// consume is one membership in the group: it joins, polls until ctx is
// done, and then stops gracefully: every worker finishes its batch, stores
// its cursors and commits, and the client leaves the group.
func (r *Runner) consume(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Seeds...),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
		kgo.MetadataMinAge(time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()), // for the dead-letter topic
	}, r.cfg.ClientOpts...)
	if r.tracing {
		// kotel starts a receive span per record, continuing the
		// producer's trace from the record headers; apply spans are its
		// children.
		k := kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(r.cfg.TracerProvider),
			kotel.TracerPropagator(r.propagator), kotel.ConsumerGroup(r.cfg.Group))),
			kotel.WithMeter(kotel.NewMeter(kotel.MeterProvider(r.cfg.MeterProvider))))
		opts = append(opts, kgo.WithHooks(k.Hooks()...))
	}
	if r.cfg.ServerSideBalancer {
		opts = append(opts, kgo.ServerSideBalancer())
	} else {
		opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkastore: runner %s: client: %w", r.cfg.Group, err)
	}
	r.client = cl

	runErr := r.poll(ctx)

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	commit := !r.crashed.Load()
	r.stopWorkers(shutdownCtx, r.partitions(), commit)
	if commit {
		if err := cl.LeaveGroupContext(shutdownCtx); err != nil {
			r.cfg.Logger.WarnContext(ctx, "leaving the group", "group", r.cfg.Group, "err", err)
		}
	}
	r.stopWorkers(shutdownCtx, r.partitions(), commit) // any assigned while leaving
	cl.Close()
	r.wg.Wait()
	r.joined.Store(false)
	return runErr
}

func (r *Runner) partitions() []int32 {
	r.workersMu.Lock()
	defer r.workersMu.Unlock()
	return slices.Sorted(func(yield func(int32) bool) {
		for p := range r.workers {
			if !yield(p) {
				return
			}
		}
	})
}

// poll hands each partition's records to its worker until ctx is done.
func (r *Runner) poll(ctx context.Context) error {
	for {
		fetches := r.client.PollRecords(ctx, r.cfg.BatchSize)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			r.client.AllowRebalance()
			return nil
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			r.setLastError(fmt.Errorf("fetch %s/%d: %w", topic, p, err))
			r.cfg.Logger.WarnContext(ctx, "fetch error", "topic", topic, "partition", p, "err", err)
			if isFatalFetch(err) {
				fatal = fmt.Errorf("kafkastore: runner %s: fetch %s/%d: %w", r.cfg.Group, topic, p, err)
			}
		})
		if fatal != nil {
			r.client.AllowRebalance()
			return fatal
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			r.workersMu.Lock()
			w, ok := r.workers[p.Partition]
			r.workersMu.Unlock()
			if !ok {
				return // not ours any more; the new owner reads them
			}
			select {
			case w.batches <- fetched{records: p.Records, highWatermark: p.HighWatermark}:
			case <-w.done:
			case <-ctx.Done():
			}
		})
		r.client.AllowRebalance()
	}
}

// isFatalFetch reports fetch errors that retrying cannot fix.
func isFatalFetch(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed)
}

func (r *Runner) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	r.joined.Store(true)
	for _, p := range assigned[r.cfg.Topic] {
		r.workersMu.Lock()
		_, ok := r.workers[p]
		r.workersMu.Unlock()
		if ok {
			continue
		}
		w, err := r.startWorker(ctx, p)
		if err != nil {
			// Without a fence the partition must not be processed; the
			// group will hand it out again after we leave or fail.
			r.setLastError(err)
			r.cfg.Logger.ErrorContext(ctx, "cannot start the partition's worker", "partition", p, "err", err)
			continue
		}
		r.workersMu.Lock()
		r.workers[p] = w
		r.workersMu.Unlock()
	}
	r.metrics.rebalances.Add(ctx, 1)
	r.updateAssigned()
}

func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	r.stopWorkers(ctx, revoked[r.cfg.Topic], true)
	r.metrics.rebalances.Add(ctx, 1)
}

func (r *Runner) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.stopWorkers(ctx, lost[r.cfg.Topic], false)
	r.metrics.rebalances.Add(ctx, 1)
}

// stopWorkers stops the partitions' workers and waits for them: with
// commit, each finishes its batch, stores its cursors and commits; without
// (the partitions were lost), each stops at once and writes nothing more.
func (r *Runner) stopWorkers(ctx context.Context, partitions []int32, commit bool) {
	var stopping []*worker
	r.workersMu.Lock()
	for _, p := range partitions {
		w, ok := r.workers[p]
		if !ok {
			continue
		}
		delete(r.workers, p)
		w.stop(commit)
		stopping = append(stopping, w)
	}
	r.workersMu.Unlock()
	for _, w := range stopping {
		select {
		case <-w.done:
		case <-ctx.Done():
			w.abort()
			<-w.done
		}
	}
	r.updateAssigned()
}

func (r *Runner) updateAssigned() {
	r.assignedMu.Lock()
	defer r.assignedMu.Unlock()
	r.assigned = r.partitions()
}

// Assigned returns the partitions this replica works on now.
func (r *Runner) Assigned() []int32 {
	r.assignedMu.Lock()
	defer r.assignedMu.Unlock()
	return slices.Clone(r.assigned)
}

func (r *Runner) setLastError(err error) {
	s := err.Error()
	r.lastErr.Store(&s)
}

// LastError returns the last error the runner logged, or "".
func (r *Runner) LastError() string {
	if s := r.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

func (r *Runner) ensureDeadLetterTopic(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafkastore: runner %s: client: %w", r.cfg.Group, err)
	}
	defer cl.Close()
	s := &Store{cfg: Config{Topic: r.cfg.DeadLetterTopic, ReplicationFactor: -1, Logger: r.cfg.Logger}}
	s.admin = newAdmin(cl)
	details, err := s.admin.ListTopics(ctx, r.cfg.DeadLetterTopic)
	if err != nil {
		return fmt.Errorf("kafkastore: runner %s: dead-letter topic: %w", r.cfg.Group, err)
	}
	if _, ok := details[r.cfg.DeadLetterTopic]; ok && details[r.cfg.DeadLetterTopic].Err == nil {
		return nil
	}
	parts := int32(1)
	if d, err := s.admin.ListTopics(ctx, r.cfg.Topic); err == nil && len(d[r.cfg.Topic].Partitions) > 0 {
		parts = int32(len(d[r.cfg.Topic].Partitions))
	}
	spec := topicSpec{name: r.cfg.DeadLetterTopic, partitions: parts, configs: map[string]*string{"retention.ms": ptr("-1")}}
	if err := s.createTopic(ctx, spec); err != nil {
		return err
	}
	return s.waitForLeaders(ctx, []string{r.cfg.DeadLetterTopic})
}
