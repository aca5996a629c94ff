package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// ErrRunnerClosed is returned by Run once the runner has run.
var ErrRunnerClosed = errors.New("kafkarunner: runner already ran")

// Runner is one replica of a projection: a member of the projection's
// consumer group with one worker goroutine per assigned partition. Start
// as many replicas (processes) as there are partitions at most; extra ones
// wait as hot standbys.
type Runner struct {
	cfg      Config
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
	// seen queues streams new to a worker for the catalog watch.
	seen chan seenStream
	// partitions is the event topic's partition count when the runner
	// started: a record off the murmur2 partition of its key over it is
	// misplaced.
	partitions int32
	// topicKnown is set once partitions is (by ensureDeadLetterTopic): the
	// metrics read partitions only after it.
	topicKnown atomic.Bool

	client *kgo.Client
	events framework.EventStore

	// parts maps assigned partitions to their workers. The group callbacks
	// run beside the poll loop and the shutdown path: hence the lock.
	partsMu sync.Mutex
	parts   map[int32]*partition
	// stopping holds the workers being stopped, until they are done: a
	// revoke or a new assignment of the same partition that comes while
	// another path stops it waits for them.
	stopping map[int32]*partition
	wg       sync.WaitGroup // partition goroutines

	// Requests of partitions to be read again from an offset, served by
	// the poll loop between two polls (SetOffsets must not race a
	// rebalance); wake interrupts a poll that waits for records.
	repositionMu sync.Mutex
	repositions  []repositionRequest
	wakeMu       sync.Mutex
	wakeCancel   context.CancelFunc
	wakePending  bool
	wakeCh       chan struct{} // cap 1: wake, for a poll loop waiting for room
	roomCh       chan struct{} // cap 1: an inbox shrank

	// leave stops the current membership (consume), nil between
	// memberships: a partition whose write a replay refused calls it, as
	// watchControl does, so that the replica leaves the group and waits
	// for the replay.
	leaveMu sync.Mutex
	leave   context.CancelFunc

	joined atomic.Bool
	// fenced holds ErrInstanceFenced once another member took the
	// instance ID (see instanceFencedHook).
	fenced       atomic.Pointer[fencedErr]
	fencedOnce   sync.Once
	leftBehind   atomic.Int64 // partition workers that ignored cancellation and still run
	shutdownBy   atomic.Int64 // deadline of the last shutdown (Unix nanoseconds), 0 before one
	dlqDownUntil atomic.Int64 // Unix ns: skip the dead-letter topic until then
	warnings     atomic.Pointer[[]string]
	lastErr      atomic.Pointer[lastError]
	// heldUntil (nil: not held) is set by the VersionedRunner while a
	// rebuild's switch freezes this version; it keeps its monotonic
	// clock reading, so a step of the wall clock does not stretch it.
	heldUntil atomic.Pointer[time.Time]
	caps      Capabilities
	hooks     hooks
	// keepsCursors: the projection writes the cursor and head of each
	// event it applies ([controlplane.CursorKeeper]).
	keepsCursors bool
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
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A no-op provider is no tracing: nothing would receive the spans.
	_, noop := cfg.TracerProvider.(tracenoop.TracerProvider)
	tracing := cfg.TracerProvider != nil && !noop
	caps := capabilitiesOf(cfg)
	cfg.setDefaults()
	r := &Runner{cfg: cfg, parts: map[int32]*partition{}, stopping: map[int32]*partition{}, tracing: tracing, wakeCh: make(chan struct{}, 1), roomCh: make(chan struct{}, 1)}
	r.caps = caps
	r.hooks = newHooks(cfg.Hooks)
	if k, ok := cfg.Projection.(controlplane.CursorKeeper); ok {
		r.keepsCursors = k.KeepsCursors()
	}
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
// Config.ShutdownTimeout: each worker finishes its batch, stores its
// cursors and commits; the client leaves the group. Run owns every goroutine
// it starts and returns after all have exited: nil after a clean shutdown,
// or the error that stopped it.
func (r *Runner) Run(ctx context.Context) error {
	if r.ran.Swap(true) {
		return ErrRunnerClosed
	}
	defer r.stopped.Store(true)
	defer r.waitWorkers()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancelMu.Lock()
	r.cancel = cancel
	r.cancelMu.Unlock()
	r.cfg.Logger.InfoContext(ctx, "control-plane capabilities", "group", r.cfg.Group, "capabilities", r.caps, "single_replica", r.cfg.SingleReplica)
	r.state.Store("starting")
	if err := r.untilReachable(ctx, "Redis", r.checkServer); err != nil || ctx.Err() != nil {
		return err
	}
	if r.cfg.Events == nil {
		err := r.untilReachable(ctx, "Kafka", func(ctx context.Context) error {
			store, err := kafkastore.New(ctx, kafkastore.Config{Seeds: r.cfg.Seeds, Topic: r.cfg.Topic, ClientOpts: r.cfg.ClientOpts, Logger: r.cfg.Logger, DontCreateTopics: true})
			if err != nil {
				return fmt.Errorf("kafkarunner: runner %s: event store: %w", r.cfg.Group, err)
			}
			r.events = store
			return nil
		})
		if err != nil || ctx.Err() != nil {
			return err
		}
		defer r.events.(*kafkastore.Store).Close()
	} else {
		r.events = r.cfg.Events
	}
	if err := r.untilReachable(ctx, "Kafka", r.ensureDeadLetterTopic); err != nil || ctx.Err() != nil {
		return err
	}
	var background sync.WaitGroup
	defer background.Wait()
	if st, ok := r.events.(*kafkastore.Store); ok {
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		r.seen = make(chan seenStream, catalogQueue)
		background.Go(func() { r.watchCatalog(watchCtx, st) })
	}
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
		r.setLeave(stopConsuming)
		var watcher sync.WaitGroup
		if r.cfg.Control != nil {
			watcher.Go(func() { r.watchControl(consumeCtx, stopConsuming) })
		}
		r.state.Store("running")
		err := r.consume(consumeCtx)
		r.setLeave(nil)
		stopConsuming()
		watcher.Wait()
		if err != nil || ctx.Err() != nil || r.crashed.Load() {
			r.state.Store("stopped")
			r.cfg.Logger.InfoContext(ctx, "runner stopped", "group", r.cfg.Group, "err", err)
			return err
		}
		// Paused, or a reset of the read model was requested (seen by
		// watchControl, or a write refused because a replay began):
		// consumption stopped cleanly; wait until it may start again.
	}
}

func (r *Runner) setLeave(f context.CancelFunc) {
	r.leaveMu.Lock()
	defer r.leaveMu.Unlock()
	r.leave = f
}

// currentLeave returns the stop of the current membership, or nil.
func (r *Runner) currentLeave() context.CancelFunc {
	r.leaveMu.Lock()
	defer r.leaveMu.Unlock()
	return r.leave
}

// waitWorkers waits for the partition goroutines that are still running:
// only workers left behind because their projection ignored cancellation
// (consume stops every other before it returns). It gives up at the
// deadline of the shutdown (ShutdownTimeout after it began; at least a
// moment) rather than hang the caller's shutdown.
func (r *Runner) waitWorkers() {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	wait := r.cfg.ShutdownTimeout
	if by := r.shutdownBy.Load(); by != 0 {
		// What is left of the last membership's shutdown, and a moment
		// for a worker it aborted at the deadline.
		wait = max(time.Until(time.Unix(0, by)), closeBudget)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		r.cfg.Logger.Error("runner stopped with partition workers still running: their projection ignores cancellation", "workers", r.leftBehind.Load())
	}
}

// checkServer asks the checkpoint store whether its server keeps the
// guarantees (no eviction); warnings (no persistence) are logged and
// reported.
func (r *Runner) checkServer(ctx context.Context) error {
	sc, ok := r.cfg.Checkpoints.(controlplane.ServerChecker)
	if !ok {
		return nil
	}
	warnings, err := sc.CheckServer(ctx)
	if err != nil {
		return fmt.Errorf("kafkarunner: runner %s: %w", r.cfg.Group, err)
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

// lastErrorShown is how long a last error stays in reports once every
// partition runs again. A variable for tests.
var lastErrorShown = 5 * time.Minute

// LastError returns the last error the runner logged, or "": it is cleared
// once it is older than five minutes and every assigned partition runs
// (the problem it reported is over; a parked stream stays in the parked
// list until resolved).
func (r *Runner) LastError() string {
	e := r.lastErr.Load()
	if e == nil {
		return ""
	}
	if time.Since(e.at) > lastErrorShown && r.allRunning() {
		r.lastErr.CompareAndSwap(e, nil)
		return ""
	}
	return e.msg
}

// allRunning reports whether every assigned partition is running.
func (r *Runner) allRunning() bool {
	for _, p := range r.Partitions() {
		if p.State != PartitionRunning {
			return false
		}
	}
	return true
}

func (r *Runner) lastErrorAt() time.Time {
	if r.LastError() == "" {
		return time.Time{}
	}
	if e := r.lastErr.Load(); e != nil {
		return e.at
	}
	return time.Time{}
}
