package kafkarunner

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

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

// DefaultSessionTimeout is Config.SessionTimeout's default: the broker's
// default minimum (group.min.session.timeout.ms), so that a crashed
// replica's partitions move within about 7s. See Config.SessionTimeout.
const DefaultSessionTimeout = 6 * time.Second

// Config configures a [Runner]. Zero fields mean their documented
// default.
type Config struct {
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
	Checkpoints controlplane.CheckpointStore
	// Fencer guards every write per partition. Default: Checkpoints, if
	// it implements Fencer.
	Fencer controlplane.Fencer
	// Parked keeps parked streams. Default: Checkpoints, if it implements
	// ParkStore; else memory.
	Parked controlplane.ParkStore
	// Control is watched for pause, resume and replay. Default:
	// Checkpoints, if it implements ControlStore; else none (the runner
	// cannot be paused or replayed from outside).
	Control controlplane.ControlStore
	// SingleReplica declares that this runner is the projection's only
	// replica, ever: it may then run without fencing, progress tracking
	// and a shared parking store (parked streams are kept in memory). For
	// tests, demos and in-process projections only; without it NewRunner
	// fails when one of them is missing. See [Capabilities].
	SingleReplica bool
	// ControlRefresh is how often the control state is read and the
	// replica's report written. Default 1s.
	ControlRefresh time.Duration
	// ReplicaID names this replica in reports. Default: host name, process
	// ID and a random suffix.
	ReplicaID string
	// Events reads a stream again when it is resumed after parking.
	// Default: a kafkastore.Store on Topic made by the runner.
	Events framework.EventStore

	// Group is the consumer group. Default: the projection's name.
	// Renaming the projection therefore changes the group (and the keys of
	// its cursors): the renamed projection starts from the beginning.
	Group string
	// BatchSize is the most records polled at once. Default 1000.
	BatchSize int
	// FetchMaxBytes is the most bytes one fetch from a broker returns
	// (kgo.FetchMaxBytes; each partition's share stays at franz-go's 1 MiB
	// unless it is larger). franz-go keeps one fetch per broker buffered
	// ahead of what the workers take, decompressed, so this bounds the
	// memory of fetched records more than the inboxes do: the records of a
	// fetch take their compressed size times the compression ratio (with
	// 200 B records that compress well, a 50 MiB fetch held about 400 MiB).
	// A fetch larger than the limit is still returned when a single record
	// batch needs it. Default 4 MiB; ClientOpts' kgo.FetchMaxBytes
	// overrides it.
	FetchMaxBytes int32
	// FlushInterval is the longest time applied cursors wait before they
	// are stored and the offsets committed. Default 1s.
	FlushInterval time.Duration
	// ParkedRefresh is how often workers look for streams an admin
	// resumed. Default 2s.
	ParkedRefresh time.Duration
	// Retry is the policy for a failing apply.
	Retry RetryPolicy
	// Retryable decides whether a failed apply is retried with backoff
	// (Retry) before the stream is parked. A permanent error
	// ([framework.ErrPermanent]: a payload that does not decode, or an
	// error the projection marked) is never retried: its stream is parked
	// at once. Default: every other error is retried.
	Retryable func(error) bool
	// Hooks are called when events are applied or skipped and streams
	// parked; see [Hook].
	Hooks []Hook
	// DeadLetterTopic receives each parked event with the reason in its
	// headers. Default Topic+".dead-letter"; created when missing.
	DeadLetterTopic string
	// ServerSideBalancer selects the KIP-848 consumer protocol
	// (group.protocol=consumer: the broker assigns, no group-wide
	// rebalance barrier) instead of the classic protocol with
	// cooperative-sticky balancing. The broker then owns the session
	// timeout and heartbeat interval (group.consumer.session.timeout.ms,
	// default 45s, and its minimum): SessionTimeout and HeartbeatInterval
	// do not apply. See docs/runner.md, "Recovery".
	ServerSideBalancer bool
	// InstanceID is the group.instance.id (static membership, KIP-345):
	// a replica restarted with the same ID after a crash gets its
	// partitions back without a rebalance, and no other replica takes
	// them in between. Give every replica its own stable ID (the pod's
	// name); two live replicas with the same ID fence each other: the
	// older one's Run ends with [ErrInstanceFenced]. A graceful shutdown
	// still leaves the group, so the partitions of a replica that is not
	// coming back move at once. Empty: dynamic membership.
	InstanceID string
	// SessionTimeout is how long the group waits for a replica that
	// stopped heartbeating (SIGKILL, a lost node) before its partitions
	// move: the longest a crashed dynamic member's partitions sit idle.
	// Heartbeats come from the client's own goroutine, not from the apply
	// path, so a slow projection never makes a session expire; only a
	// process that stops (SIGSTOP, a frozen VM) or a network that drops
	// everything for this long does. It must lie within the broker's
	// group.min.session.timeout.ms (default 6s) and
	// group.max.session.timeout.ms. Default 6s (franz-go and Kafka: 45s);
	// ClientOpts' kgo.SessionTimeout overrides it.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the replica heartbeats (classic
	// protocol); default 1s, so that a session of 6s survives five lost
	// heartbeats. ClientOpts' kgo.HeartbeatInterval overrides it.
	HeartbeatInterval time.Duration
	// ShutdownTimeout bounds the graceful shutdown after ctx is cancelled:
	// finish the batch, store cursors, commit, leave the group. Default 30s.
	// What is not done by then is given up: a worker's writes are
	// cancelled, and a commit still waiting (franz-go holds commits while
	// the group rebalances, and a rebalance waits for a crashed member
	// until its session expires) is dropped; the stored cursors make the
	// next owner skip what it reads again. Leaving the group and closing
	// the client then take at most a few seconds more.
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

	Logger *slog.Logger
	// TracerProvider traces the runner: a span per polled batch of a
	// partition, linked to its records' traces, and per-event apply spans
	// as EventSpans says. Nil: no tracing, and no cost for it.
	TracerProvider trace.TracerProvider
	// EventSpans says which events get an apply span of their own (with
	// tracing on). Default EventSpansSampled.
	EventSpans    EventSpans
	MeterProvider metric.MeterProvider
}

// EventSpans says which events get an apply span of their own, beside the
// span of their batch. An event whose apply fails (retried, parked) gets
// one whatever the mode, unless it is EventSpansOff.
type EventSpans int

const (
	// EventSpansSampled gives an apply span to an event whose record
	// carries a sampled trace context (its append was traced, or kotel's
	// receive span was sampled): the trace from append to apply stays
	// whole where the sampler kept it, and unsampled events cost nothing.
	EventSpansSampled EventSpans = iota
	// EventSpansAlways gives every event an apply span.
	EventSpansAlways
	// EventSpansOff gives no event an apply span: only batch spans.
	EventSpansOff
)

// defaultFetchMaxBytes is Config.FetchMaxBytes' default: 4 MiB, against
// franz-go's 50 MiB. In BenchmarkRunnerScaling (200 B records of a
// compressible payload) it held a third of the peak live heap of franz-go's
// default, at no loss of throughput (docs/performance.md).
const defaultFetchMaxBytes = 4 << 20

func (c *Config) setDefaults() {
	if c.Group == "" && c.Projection != nil {
		c.Group = c.Projection.Name()
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = defaultFetchMaxBytes
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
		c.Control, _ = c.Checkpoints.(controlplane.ControlStore)
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
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = min(time.Second, c.SessionTimeout/3)
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
		c.Fencer, _ = c.Checkpoints.(controlplane.Fencer)
	}
	if c.Parked == nil {
		if p, ok := c.Checkpoints.(controlplane.ParkStore); ok {
			c.Parked = p
		} else {
			c.Parked = &memoryParkStore{}
		}
	}
}

// Validate reports every problem of c, joined.
func (c Config) Validate() error {
	var errs []error
	if len(c.Seeds) == 0 {
		errs = append(errs, errors.New("kafkarunner: Config.Seeds is required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("kafkarunner: Config.Topic is required"))
	}
	if c.Projection == nil {
		errs = append(errs, errors.New("kafkarunner: Config.Projection is required"))
	} else if err := framework.ValidateProjectionName(c.Projection.Name()); err != nil {
		errs = append(errs, fmt.Errorf("kafkarunner: Config.Projection: %w", err))
	}
	if c.Checkpoints == nil {
		errs = append(errs, errors.New("kafkarunner: Config.Checkpoints is required"))
	} else if err := capabilitiesOf(c).missing(c.SingleReplica); err != nil {
		errs = append(errs, err)
	}
	if c.DeadLetterTopic != "" && c.DeadLetterTopic == c.Topic {
		errs = append(errs, errors.New("kafkarunner: Config.DeadLetterTopic must differ from Topic: the runner never writes to the event topic"))
	}
	if c.BatchSize < 0 || c.FetchMaxBytes < 0 || c.FlushInterval < 0 || c.ShutdownTimeout < 0 || c.ParkedRefresh < 0 || c.RevokeTimeout < 0 ||
		c.FencedWait < 0 || c.StateCheckInterval < 0 || c.StateLostRecheck < 0 || c.SessionTimeout < 0 || c.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("kafkarunner: Config sizes and durations must not be negative"))
	}
	if c.HeartbeatInterval > 0 && c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("kafkarunner: Config.HeartbeatInterval %v must be shorter than SessionTimeout %v", c.HeartbeatInterval, c.SessionTimeout))
	}
	if len(c.InstanceID) > 249 {
		errs = append(errs, fmt.Errorf("kafkarunner: Config.InstanceID is %d bytes; Kafka allows 249", len(c.InstanceID)))
	}
	if c.Retry.Attempts < 0 {
		errs = append(errs, fmt.Errorf("kafkarunner: Config.Retry.Attempts %d is negative", c.Retry.Attempts))
	}
	return errors.Join(errs...)
}
