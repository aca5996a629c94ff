package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
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
// newer token exists, with an error that matches [framework.ErrFenced].
// redischeckpoint.Store implements it.
type Fencer interface {
	AcquireFence(ctx context.Context, projection string, partition int32) (framework.Fence, error)
}

// ProgressStore is a CheckpointStore that records, per partition, how far
// its stored state covers the partition, so that the runner can tell
// lost state from a normal restart. redischeckpoint.Store implements it.
// The runner calls it from the partition's worker goroutine, with the
// partition's fence in ctx.
type ProgressStore interface {
	// Progress returns the next offset of partition that the stored state
	// covers in the current epoch; ok is false when none is recorded.
	Progress(ctx context.Context, projection string, partition int32) (next int64, ok bool, err error)
	// AdvancePartition raises the cursors of heads (never lowering one),
	// records the heads, and raises the partition's progress to next, in
	// one atomic step. The runner commits offset next only after it
	// returned nil.
	AdvancePartition(ctx context.Context, projection string, partition int32, heads []framework.StreamHead, next int64) error
	// CheckState reports, without writing, whether the fence in ctx is
	// still current ([framework.ErrFenced] if not) and the store still
	// holds every write made with it ([framework.ErrStateLost] if not).
	CheckState(ctx context.Context, projection string) error
}

// HeadStore is implemented by checkpoint stores that also keep the event
// applied at each cursor, with its position (redischeckpoint.Store): the
// runner then recognises an event that repeats an applied sequence with
// another event ID (a conflict) however far back, also after a restart.
type HeadStore interface {
	Heads(ctx context.Context, name string, streamIDs []string) (map[string]framework.StreamHead, error)
}

// ServerChecker is implemented by stores that can tell whether the server
// behind them keeps the guarantees the runner needs (redischeckpoint.Store:
// Redis's maxmemory-policy must be noeviction). The runner calls it once
// at start: an error refuses to start, warnings are logged and reported.
type ServerChecker interface {
	CheckServer(ctx context.Context) (warnings []string, err error)
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
	// RevokeTimeout bounds how long a revoked partition may take to finish
	// its batch, store its cursors and commit before its writes are
	// cancelled (the rebalance waits for it). Default 20s.
	RevokeTimeout time.Duration
	// FencedWait is how long a partition whose fence another replica took
	// waits for the group to revoke it before it takes the fence back.
	// A replica that was paused past its session (a zombie) learns within
	// a heartbeat that the partition moved. Default 1m.
	FencedWait time.Duration
	// StateCheckInterval is how often an idle partition asks the store
	// whether its fence is still current and its writes are still there
	// (busy partitions learn it from every write). Default 5s.
	StateCheckInterval time.Duration
	// StateLostRecheck is how often a partition stopped because the store
	// lost state checks again. Default 30s.
	StateLostRecheck time.Duration

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
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 20 * time.Second
	}
	if c.FencedWait == 0 {
		c.FencedWait = time.Minute
	}
	if c.StateCheckInterval == 0 {
		c.StateCheckInterval = 5 * time.Second
	}
	if c.StateLostRecheck == 0 {
		c.StateLostRecheck = 30 * time.Second
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
	if c.BatchSize < 0 || c.FlushInterval < 0 || c.ShutdownTimeout < 0 || c.ParkedRefresh < 0 || c.RevokeTimeout < 0 ||
		c.FencedWait < 0 || c.StateCheckInterval < 0 || c.StateLostRecheck < 0 {
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
	// maxRecordBytes is the producer's batch limit: large enough for a
	// dead-letter copy of the largest record the topic accepts.
	maxRecordBytes int32

	client *kgo.Client
	events framework.EventStore

	// parts maps assigned partitions to their workers. The group callbacks
	// run beside the poll loop and the shutdown path: hence the lock.
	partsMu sync.Mutex
	parts   map[int32]*partition
	wg      sync.WaitGroup // partition goroutines

	// Requests of partitions to be read again from an offset, served by
	// the poll loop between two polls (SetOffsets must not race a
	// rebalance); wake interrupts a poll that waits for records.
	repositionMu sync.Mutex
	repositions  []repositionRequest
	wakeMu       sync.Mutex
	wakeCancel   context.CancelFunc
	wakePending  bool

	joined       atomic.Bool
	dlqDownUntil atomic.Int64 // Unix ns: skip the dead-letter topic until then
	warnings     atomic.Pointer[[]string]
	lastErr      atomic.Pointer[lastError]
}

type lastError struct {
	msg string
	at  time.Time
}

type repositionRequest struct {
	p      *partition
	offset int64
	done   chan struct{}
}

// NewRunner checks cfg and returns a runner; Run starts it.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tracing := cfg.TracerProvider != nil
	cfg.setDefaults()
	r := &Runner{cfg: cfg, parts: map[int32]*partition{}, tracing: tracing}
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
	if err := r.checkServer(ctx); err != nil {
		return err
	}
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

// checkServer asks the checkpoint store whether its server keeps the
// guarantees (no eviction); warnings (no persistence) are logged and
// reported.
func (r *Runner) checkServer(ctx context.Context) error {
	sc, ok := r.cfg.Checkpoints.(ServerChecker)
	if !ok {
		return nil
	}
	warnings, err := sc.CheckServer(ctx)
	if err != nil {
		return fmt.Errorf("kafkastore: runner %s: %w", r.cfg.Group, err)
	}
	for _, w := range warnings {
		r.cfg.Logger.WarnContext(ctx, w, "group", r.cfg.Group)
	}
	r.warnings.Store(&warnings)
	return nil
}

// Warnings returns standing problems of the runner's setup found at start,
// such as a Redis without persistence.
func (r *Runner) Warnings() []string {
	if w := r.warnings.Load(); w != nil {
		return slices.Clone(*w)
	}
	return nil
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
	if r.maxRecordBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(r.maxRecordBytes))
	}
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
	r.stopPartitions(shutdownCtx, r.partitionIDs(), commit)
	if commit {
		if err := cl.LeaveGroupContext(shutdownCtx); err != nil {
			r.cfg.Logger.WarnContext(ctx, "leaving the group", "group", r.cfg.Group, "err", err)
		}
	}
	r.stopPartitions(shutdownCtx, r.partitionIDs(), commit) // any assigned while leaving
	r.serveRepositions()                                    // release waiters
	cl.Close()
	r.wg.Wait()
	r.joined.Store(false)
	return runErr
}

func (r *Runner) partitionIDs() []int32 {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	return slices.Sorted(maps.Keys(r.parts))
}

func (r *Runner) partitionOf(id int32) *partition {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	return r.parts[id]
}

// poll hands each partition's records to its worker until ctx is done. It
// never blocks on a worker (see partition), and between two polls it reads
// partitions again from where their restarted workers ask.
func (r *Runner) poll(ctx context.Context) error {
	for {
		pollCtx := r.pollContext(ctx)
		fetches := r.client.PollRecords(pollCtx, r.cfg.BatchSize)
		r.endPoll()
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
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			if p := r.partitionOf(fp.Partition); p != nil {
				p.deliver(fetched{records: fp.Records, highWatermark: fp.HighWatermark})
			}
			// Not ours any more: the new owner reads them.
		})
		r.serveRepositions()
		r.client.AllowRebalance()
	}
}

// pollContext returns the context of the next poll: wake cancels it.
func (r *Runner) pollContext(ctx context.Context) context.Context {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	pollCtx, cancel := context.WithCancel(ctx)
	r.wakeCancel = cancel
	if r.wakePending {
		cancel()
	}
	return pollCtx
}

func (r *Runner) endPoll() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.wakeCancel != nil {
		r.wakeCancel()
		r.wakeCancel = nil
	}
	r.wakePending = false
}

// wake makes the poll loop come round now, even with no records to poll.
func (r *Runner) wake() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	r.wakePending = true
	if r.wakeCancel != nil {
		r.wakeCancel()
	}
}

// reposition has the poll loop read partition p again from offset (its
// start when offset is negative), dropping what its inbox holds. It
// returns when done, or with errStopping when p stops first.
func (r *Runner) reposition(p *partition, offset int64) error {
	req := repositionRequest{p: p, offset: offset, done: make(chan struct{})}
	r.repositionMu.Lock()
	r.repositions = append(r.repositions, req)
	r.repositionMu.Unlock()
	r.wake()
	select {
	case <-req.done:
		return nil
	case <-p.quit:
		return errStopping
	}
}

// serveRepositions sets the offsets partitions asked for. Called by the
// poll loop between polls, before it allows a rebalance.
func (r *Runner) serveRepositions() {
	r.repositionMu.Lock()
	reqs := r.repositions
	r.repositions = nil
	r.repositionMu.Unlock()
	if len(reqs) == 0 {
		return
	}
	set := map[int32]kgo.EpochOffset{}
	for _, req := range reqs {
		if r.partitionOf(req.p.id) == req.p {
			// A negative offset is skipped by SetOffsets; 0 is read as
			// the start (an offset below the log start is reset to it).
			set[req.p.id] = kgo.EpochOffset{Epoch: -1, Offset: max(req.offset, 0)}
			req.p.clearInbox()
		}
	}
	if len(set) > 0 && r.client != nil {
		r.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.cfg.Topic: set})
	}
	for _, req := range reqs {
		close(req.done)
	}
}

// isFatalFetch reports fetch errors that retrying cannot fix.
func isFatalFetch(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed)
}

// onAssigned starts a worker for every newly assigned partition. It does
// not wait for the workers to take their fences: that happens in their own
// goroutines, with retries, while their records wait in the inbox.
func (r *Runner) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	r.joined.Store(true)
	for _, id := range assigned[r.cfg.Topic] {
		r.partsMu.Lock()
		if _, ok := r.parts[id]; ok {
			r.partsMu.Unlock()
			continue
		}
		p := r.newPartition(id)
		r.parts[id] = p
		r.partsMu.Unlock()
		r.wg.Go(p.run)
		r.cfg.Logger.InfoContext(ctx, "partition assigned", "group", r.cfg.Group, "partition", id)
	}
	r.metrics.rebalances.Add(ctx, 1)
}

func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	defer cancel()
	r.stopPartitions(ctx, revoked[r.cfg.Topic], true)
	r.metrics.rebalances.Add(ctx, 1)
}

func (r *Runner) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.stopPartitions(ctx, lost[r.cfg.Topic], false)
	r.metrics.rebalances.Add(ctx, 1)
}

// stopPartitions stops the partitions' workers and waits for them: with
// commit, each finishes its batch, stores its cursors and commits; without
// (the partitions were lost), each stops at once and writes nothing more.
// Past ctx's deadline their writes are cancelled.
func (r *Runner) stopPartitions(ctx context.Context, ids []int32, commit bool) {
	var stopping []*partition
	r.partsMu.Lock()
	for _, id := range ids {
		p, ok := r.parts[id]
		if !ok {
			continue
		}
		delete(r.parts, id)
		p.stop(commit)
		stopping = append(stopping, p)
	}
	r.partsMu.Unlock()
	for _, p := range stopping {
		select {
		case <-p.done:
		case <-ctx.Done():
			r.cfg.Logger.Warn("partition did not stop in time; cancelling its writes", "partition", p.id)
			p.abort()
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				// A projection that ignores its context: leave its
				// goroutine behind rather than the rebalance.
				r.cfg.Logger.Error("partition worker ignores cancellation; leaving it behind", "partition", p.id)
			}
		}
		if r.client != nil {
			// A paused partition stays paused in the client: unpause it,
			// in case the group gives it back.
			r.client.ResumeFetchPartitions(map[string][]int32{r.cfg.Topic: {p.id}})
		}
	}
}

// Assigned returns the partitions this replica works on now.
func (r *Runner) Assigned() []int32 { return r.partitionIDs() }

// Partitions returns the state of every partition this replica was
// assigned, by partition.
func (r *Runner) Partitions() []PartitionStatus {
	r.partsMu.Lock()
	parts := slices.Collect(maps.Values(r.parts))
	r.partsMu.Unlock()
	out := make([]PartitionStatus, 0, len(parts))
	for _, p := range parts {
		out = append(out, p.statusNow())
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int { return int(a.Partition - b.Partition) })
	return out
}

func (r *Runner) setLastError(err error) {
	r.lastErr.Store(&lastError{msg: err.Error(), at: time.Now().UTC()})
}

// LastError returns the last error the runner logged, or "".
func (r *Runner) LastError() string {
	if e := r.lastErr.Load(); e != nil {
		return e.msg
	}
	return ""
}

func (r *Runner) lastErrorAt() time.Time {
	if e := r.lastErr.Load(); e != nil {
		return e.at
	}
	return time.Time{}
}

// ensureDeadLetterTopic creates the dead-letter topic when it is missing,
// with the same partitions as the event topic and room for a copy of the
// largest record the event topic accepts (plus the dead-letter headers),
// and sizes the producer for it.
func (r *Runner) ensureDeadLetterTopic(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafkastore: runner %s: client: %w", r.cfg.Group, err)
	}
	defer cl.Close()
	s := &Store{cfg: Config{Topic: r.cfg.DeadLetterTopic, ReplicationFactor: -1, Logger: r.cfg.Logger}}
	s.admin = newAdmin(cl)
	sourceMax := int32(0)
	if rc, err := s.admin.DescribeTopicConfigs(ctx, r.cfg.Topic); err == nil {
		if c, err := rc.On(r.cfg.Topic, nil); err == nil {
			for _, kv := range c.Configs {
				if kv.Key == "max.message.bytes" && kv.Value != nil {
					if n, err := strconv.ParseInt(*kv.Value, 10, 32); err == nil {
						sourceMax = int32(n)
					}
				}
			}
		}
	}
	if sourceMax > 0 {
		// Room for the dead-letter headers (the error text is capped).
		r.maxRecordBytes = max(sourceMax+dlqHeadroom, 1_000_012)
	}
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
	configs := map[string]*string{"retention.ms": ptr("-1")}
	if sourceMax > 0 {
		configs["max.message.bytes"] = ptr(strconv.FormatInt(int64(sourceMax)+dlqHeadroom, 10))
	}
	spec := topicSpec{name: r.cfg.DeadLetterTopic, partitions: parts, configs: configs}
	if err := s.createTopic(ctx, spec); err != nil {
		return err
	}
	return s.waitForLeaders(ctx, []string{r.cfg.DeadLetterTopic})
}

// dlqHeadroom is what a dead-letter copy may add to a record: the
// projector.dlq.* headers, the error text capped at maxDLQErrorBytes.
const dlqHeadroom = 64 << 10
