// Package chaos is a fault suite: a workload appends events to Kafka with a
// raw producer (its acks are the ground truth), counting worker processes
// project them into Redis, a nemesis driven by a seed kills, stops
// (zombies) and scales the workers, and a checker compares what the workers
// applied with what the broker acked. See docs/reliability.md.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Config configures a run.
type Config struct {
	Seed       uint64
	Duration   time.Duration // of the workload and the faults
	Replicas   int           // initial workers; the nemesis keeps 1..Replicas+1
	Streams    int
	Rate       int // events per second, about
	Partitions int32
	Session    time.Duration // the workers' group session timeout
	// RecoverWithin bounds the wait for lag 0 (and a rebuild's switch)
	// after the last fault.
	RecoverWithin time.Duration

	Topology Topology
	// Workload is WorkloadCounter (default) or WorkloadBilling.
	Workload string
	// BillingBinary is the examples/billing command, for WorkloadBilling:
	// run as "<BillingBinary> worker".
	BillingBinary string
	// WaitReplicas is the workers' redischeckpoint.Config.WaitReplicas
	// (0: 1 with Sentinels, else none; negative: none).
	WaitReplicas int
	Topic        string // created; must not exist
	Namespace    string // Redis key namespace
	// WorkerBinary is run as "<WorkerBinary> worker --flags" (and as
	// "<WorkerBinary> writer --flags" for the writer processes).
	WorkerBinary string
	// Writers, for the counter workload, is how many writer processes
	// append the events, each with a kafkastore.Store guarded by
	// redischeckpoint.AppendRegistry (0: one in-process raw producer).
	Writers int
	// AppendLease is the writers' kafkastore.Config.AppendLease (default
	// DefaultWriterLease).
	AppendLease time.Duration
	// CtlBinary is projectorctl, for the rebuild and replay faults
	// (empty: none).
	CtlBinary string
	// Kinds are the fault kinds to draw from (default: Kinds(Topology,
	// CtlBinary != "")).
	Kinds []string
	// WorkDir receives the worker logs.
	WorkDir string
	Log     io.Writer
}

func (c *Config) setDefaults() {
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Streams <= 0 {
		c.Streams = 200
	}
	if c.Rate <= 0 {
		c.Rate = 400
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.Session <= 0 {
		c.Session = 6 * time.Second
	}
	if c.RecoverWithin <= 0 {
		c.RecoverWithin = 2 * time.Minute
	}
	if c.Workload == "" {
		c.Workload = WorkloadCounter
	}
	switch {
	case c.WaitReplicas < 0:
		c.WaitReplicas = 0
	case c.WaitReplicas == 0 && c.Topology.Redis.MasterName != "":
		c.WaitReplicas = 1
	}
	if c.AppendLease <= 0 {
		c.AppendLease = DefaultWriterLease
	}
	if len(c.Kinds) == 0 {
		c.Kinds = Kinds(c.Topology, c.CtlBinary != "", c.Writers > 0)
		if c.Workload == WorkloadBilling {
			c.Kinds = slices.DeleteFunc(c.Kinds, func(k string) bool { return !billingKinds[k] })
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Projection is the counting workers' projection.
const Projection = "chaos-counter"

// projection is the projection the run's workers run.
func (c *Config) projection() string {
	if c.Workload == WorkloadBilling {
		return mabis.ProjectionName
	}
	return Projection
}

// billingKinds are the faults a billing run can inject: the billing worker
// reaches Kafka directly (no Kafka network faults) and runs on a single
// Redis URL (no Sentinel or Cluster).
var billingKinds = map[string]bool{FaultKill: true, FaultZombie: true, FaultScaleUp: true, FaultScaleDown: true,
	FaultRedisPartition: true, FaultLatency: true, FaultReset: true, FaultRebuild: true, FaultReplay: true}

// PlannedSchedule is the schedule a run of cfg injects (after the
// defaults: the kinds the topology and workload allow).
func (c Config) PlannedSchedule() []Fault {
	c.setDefaults()
	return ScheduleWithLease(c.Seed, c.Duration, c.Session, c.AppendLease, c.Kinds)
}

// GroupName is the consumer group of the workers of a run on topic.
func GroupName(topic string) string { return topic + ".counter" }

// Violation is one (stream, sequence) whose applied count is wrong.
type Violation struct {
	Kind     string `json:"kind"` // lost, duplicated, unexpected, out-of-order, not-parked, …
	Stream   string `json:"stream"`
	Sequence uint64 `json:"sequence"`
	Count    int64  `json:"count"`
	Detail   string `json:"detail,omitempty"`
}

// maxListed caps the violations listed in a report (all are counted).
const maxListed = 50

// Report is the outcome of a run.
type Report struct {
	Seed            uint64   `json:"seed"`
	Topology        string   `json:"topology"`
	Workload        string   `json:"workload"`
	Kinds           []string `json:"kinds"`
	WaitReplicas    int      `json:"wait_replicas"`
	Topic           string   `json:"topic"`
	Namespace       string   `json:"namespace"`
	Group           string   `json:"group"`
	Duration        string   `json:"duration"`
	Replicas        int      `json:"replicas"`
	Streams         int      `json:"streams"`
	Session         string   `json:"session_timeout"`
	EventsAppended  int64    `json:"events_appended"`
	ProduceFailures int64    `json:"produce_failures"`
	// Writers is Config.Writers; with writer processes the Appends*
	// counts are their appends' outcomes (EventsAppended is AppendsAcked),
	// and EventsInStreams the events the streams hold at the end (acked,
	// and uncertain ones that were written).
	Writers           int    `json:"writers,omitempty"`
	AppendLease       string `json:"append_lease,omitempty"`
	AppendsAcked      int64  `json:"appends_acked,omitempty"`
	AppendsNotWritten int64  `json:"appends_not_written,omitempty"`
	AppendsConflicts  int64  `json:"appends_conflicts,omitempty"`
	AppendsUncertain  int64  `json:"appends_uncertain,omitempty"`
	// AppendsInFlight are the appends of writers that exited (killed)
	// before reporting an outcome: uncertain too.
	AppendsInFlight int64          `json:"appends_in_flight_at_exit,omitempty"`
	EventsInStreams int64          `json:"events_in_streams,omitempty"`
	Schedule        []Fault        `json:"schedule"`
	Faults          []Event        `json:"faults"`
	FaultsPerKind   map[string]int `json:"faults_per_kind"`
	// RecoverySeconds is the time from the end of the workload and of the
	// last fault to the group's lag 0 (-1: not reached).
	RecoverySeconds float64 `json:"recovery_seconds"`
	LagAtEnd        int64   `json:"lag_at_end"`
	EventsChecked   int64   `json:"events_checked"`
	// LiveVersion is the read-model version live at the end ("chaos-counter@v2").
	LiveVersion     string         `json:"live_version"`
	Poison          []PoisonCase   `json:"poison,omitempty"`
	Admin           []string       `json:"admin_errors,omitempty"`
	ViolationCounts map[string]int `json:"violation_counts"`
	Violations      []Violation    `json:"violations"`
	WorkerExits     []string       `json:"worker_exit_errors,omitempty"`
	Errors          []string       `json:"errors,omitempty"`
	// UncertainStreams are streams whose produce failed (no more events
	// went to them).
	UncertainStreams int    `json:"uncertain_streams"`
	Rate             int    `json:"rate"`
	Partitions       int32  `json:"partitions"`
	RecoverWithin    string `json:"recover_within"`
	// PrefixChecks are the read models checked before they were reset or
	// retired (the live version before a replay, every retired version
	// kept by a rebuild's --keep).
	PrefixChecks []string `json:"prefix_checks,omitempty"`

	mu sync.Mutex
}

// Failed reports whether the run found a violation or could not finish.
func (r *Report) Failed() bool {
	n := 0
	for _, c := range r.ViolationCounts {
		n += c
	}
	return n > 0 || len(r.Errors) > 0 || len(r.WorkerExits) > 0 || r.LagAtEnd != 0
}

// Run runs the suite once.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	topo := cfg.Topology
	if len(topo.Brokers) == 0 || len(topo.Redis.Addrs) == 0 || cfg.Topic == "" || cfg.Namespace == "" || cfg.WorkerBinary == "" || cfg.WorkDir == "" {
		return nil, errors.New("chaos: Topology (brokers, Redis), Topic, Namespace, WorkerBinary and WorkDir are required")
	}
	billing := cfg.Workload == WorkloadBilling
	if billing && (cfg.BillingBinary == "" || topo.Redis.MasterName != "" || topo.Redis.Cluster) {
		return nil, errors.New("chaos: the billing workload needs BillingBinary and a single Redis server")
	}
	if billing && cfg.Writers > 0 {
		return nil, errors.New("chaos: writer processes are for the counter workload")
	}
	for _, k := range cfg.Kinds {
		if billing && !billingKinds[k] {
			return nil, fmt.Errorf("chaos: the billing workload cannot inject %s faults", k)
		}
		if (k == FaultWriterKill || k == FaultWriterZombie) && cfg.Writers <= 0 {
			return nil, fmt.Errorf("chaos: %s faults need writer processes (Writers > 0)", k)
		}
	}
	proj := cfg.projection()
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
	}
	group := GroupName(cfg.Topic)
	rep := &Report{
		Seed: cfg.Seed, Topology: topo.String(), Workload: cfg.Workload, Kinds: cfg.Kinds, WaitReplicas: cfg.WaitReplicas,
		Topic: cfg.Topic, Namespace: cfg.Namespace, Group: group, Duration: cfg.Duration.String(),
		Replicas: cfg.Replicas, Streams: cfg.Streams, Session: cfg.Session.String(),
		Rate: cfg.Rate, Partitions: cfg.Partitions, RecoverWithin: cfg.RecoverWithin.String(),
		Writers:       cfg.Writers,
		FaultsPerKind: map[string]int{}, ViolationCounts: map[string]int{"lost": 0, "duplicated": 0, "unexpected": 0, "out-of-order": 0},
		RecoverySeconds: -1, LagAtEnd: -1,
	}
	if cfg.Writers > 0 {
		rep.AppendLease = cfg.AppendLease.String()
	}
	rep.Schedule = ScheduleWithLease(cfg.Seed, cfg.Duration, cfg.Session, cfg.AppendLease, cfg.Kinds)
	for _, f := range rep.Schedule {
		logf("planned %s", f)
	}

	// The topics (event topic and catalog), created as an application
	// would, with the store; the workload then writes with its own client.
	st, err := kafkastore.New(ctx, kafkastore.Config{Seeds: topo.Brokers, Topic: cfg.Topic, Partitions: cfg.Partitions, ReplicationFactor: -1})
	if err != nil {
		return nil, fmt.Errorf("chaos: create topic: %w", err)
	}
	st.Close()

	rc := newRedisClient(topo.Redis, nil)
	defer rc.Close()
	store, counting, err := openCounting(rc, cfg.Namespace, Projection, 0)
	if err != nil {
		return nil, err
	}
	var bl *billingLoad
	if billing {
		if bl, err = newBillingLoad(cfg.Seed, cfg.Rate, cfg.Duration); err != nil {
			return nil, err
		}
	}

	args := []string{"--brokers", strings.Join(topo.Brokers, ","), "--topic", cfg.Topic, "--group", group,
		"--namespace", cfg.Namespace, "--projection", Projection, "--session-timeout", cfg.Session.String(),
		"--wait-replicas", strconv.Itoa(cfg.WaitReplicas)}
	fl := &fleet{binary: cfg.WorkerBinary, topo: topo, dir: cfg.WorkDir, min: 1, max: cfg.Replicas + 1,
		args: append(args, topo.Redis.flags()...)}
	if billing {
		fl.command = billingWorker(cfg, group)
	}
	defer func() { // on an early return
		if exits := fl.stopAll(30 * time.Second); len(exits) > 0 {
			rep.WorkerExits = append(rep.WorkerExits, exits...)
		}
	}()
	for range cfg.Replicas {
		if _, err := fl.start(); err != nil {
			return nil, err
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(topo.Brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	liveGroup := func(ctx context.Context) (string, error) {
		name, err := store.Live(ctx, proj)
		if err != nil {
			return "", err
		}
		_, v := framework.SplitVersionedName(name)
		return framework.VersionGroup(group, v), nil
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(topo.Brokers...), kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0), kgo.RecordDeliveryTimeout(20*time.Second))
	if err != nil {
		return nil, err
	}
	defer producer.Close()
	pois := newPoisoner(producer, cfg.Topic, cfg.Partitions)
	defer pois.Close()
	nem := &nemesis{fleet: fl, topo: topo, topic: cfg.Topic, partitions: cfg.Partitions, projection: proj,
		poison: pois, logf: logf}
	if cfg.CtlBinary != "" {
		nem.ctl = func(ctx context.Context, args ...string) error {
			return runProjectorctl(ctx, cfg, group, args...)
		}
	}
	nem.live = func(ctx context.Context) (string, error) { return store.Live(ctx, proj) }

	t := &truth{acked: map[string]uint64{}, uncertain: map[string]bool{}}
	// visible counts the records a read_committed consumer gets in
	// offset ranges: with transactional appends (writers, and the billing
	// workload's store) part of an offset gap can be transaction markers
	// and aborted records, which are no lag. (The runner commits past a
	// marker once it fetched it; this keeps the lag check exact in
	// between.)
	var visible func(context.Context, map[int32][2]int64) (int64, error)
	if cfg.Writers > 0 || billing {
		visible = func(ctx context.Context, ranges map[int32][2]int64) (int64, error) {
			return visibleRecords(ctx, topo.Brokers, cfg.Topic, ranges)
		}
	}
	var (
		wt *writerTruth
		wf *writerFleet
		// final is the truth read from the streams at the end (writers).
		final *truth
	)
	// truthNow is the truth a prefix check uses: with writers, the
	// streams as read at the end, or during the workload the acks so far
	// with room for the uncertain and in-flight events.
	truthNow := func() *truth {
		if wt == nil {
			return t
		}
		if final != nil {
			return final
		}
		return wt.prefixTruth()
	}
	if cfg.Writers > 0 {
		wt = newWriterTruth()
		wargs := []string{"--brokers", strings.Join(topo.Brokers, ","), "--topic", cfg.Topic,
			"--partitions", strconv.Itoa(int(cfg.Partitions)), "--namespace", cfg.Namespace,
			"--wait-replicas", strconv.Itoa(cfg.WaitReplicas), "--writers", strconv.Itoa(cfg.Writers),
			"--streams", strconv.Itoa(cfg.Streams), "--rate", strconv.FormatFloat(float64(cfg.Rate)/float64(cfg.Writers), 'f', 2, 64),
			"--append-lease", cfg.AppendLease.String()}
		wf = &writerFleet{binary: cfg.WorkerBinary, topo: topo, dir: cfg.WorkDir, t: wt, logf: logf,
			args: append(wargs, topo.Redis.flags()...)}
		nem.writers = wf
		defer func() { // on an early return
			if exits := wf.stopAll(30 * time.Second); len(exits) > 0 {
				rep.WorkerExits = append(rep.WorkerExits, exits...)
			}
		}()
	}
	if !billing {
		// Before a replay resets the live read model, and at the end for
		// every version a rebuild retired: what they applied is checked as
		// a prefix, so faults before a reset leave evidence.
		nem.prefixCheck = func(ctx context.Context, name, label string) {
			v, err := counting.Version(name)
			if err == nil {
				err = checkApplied(ctx, rc, v, cfg.Streams, truthNow(), true, label, rep.add, nil)
			}
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if err != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("prefix check of %s (%s): %v", name, label, err))
				return
			}
			rep.PrefixChecks = append(rep.PrefixChecks, name+" "+label)
		}
	}
	// The writers live until the workload's duration is over and every
	// writer fault of the schedule ran: faults run one after the other, so
	// slow ones before them (a failover waits up to 30 s) can push a writer
	// fault past the workload's end, and it would find no writer.
	writerFaultsRan := make(chan struct{})
	lastWriterFault := -1
	for i, f := range rep.Schedule {
		if f.Kind == FaultWriterKill || f.Kind == FaultWriterZombie {
			lastWriterFault = i
		}
	}
	if lastWriterFault < 0 {
		close(writerFaultsRan)
	}
	start := time.Now()
	wctx, stopWorkload := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer stopWorkload()
	workDone := make(chan error, 1)
	if billing {
		// Every event of the month must be appended: not bounded by the
		// run's duration, only by ctx.
		go func() { workDone <- bl.run(ctx, topo.Brokers, cfg.Topic, cfg.Rate) }()
	} else if wf != nil {
		for slot := range cfg.Writers {
			if _, err := wf.start(slot); err != nil {
				return rep, err
			}
		}
		go func() {
			<-wctx.Done()
			select {
			case <-writerFaultsRan:
			case <-ctx.Done():
			}
			// Each writer finishes its appends in flight (bounded by the
			// lease and the store's timeouts).
			exits := wf.stopAll(90 * time.Second)
			if len(exits) > 0 {
				workDone <- errors.New("writer exits: " + strings.Join(exits, "; "))
				return
			}
			workDone <- nil
		}()
	} else {
		go func() { workDone <- runWorkload(wctx, topo.Brokers, cfg.Topic, cfg.Streams, cfg.Rate, t) }()
	}

	var (
		catchUp   sync.WaitGroup
		catchUpMu sync.Mutex
		caughtUp  = map[int]float64{} // index in rep.Faults -> seconds
	)
	defer catchUp.Wait() // before the admin client closes
	for i, f := range rep.Schedule {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(f.At))):
		}
		if ctx.Err() != nil {
			break
		}
		ev := nem.inject(ctx, f, len(rep.Faults))
		if i == lastWriterFault {
			close(writerFaultsRan)
		}
		ev.CatchUpSeconds = -1
		rep.Faults = append(rep.Faults, ev)
		if ev.Skipped == "" {
			i := len(rep.Faults) - 1
			catchUp.Add(1)
			go func() {
				defer catchUp.Done()
				if d, ok := catchUpAfter(ctx, adm, liveGroup, cfg.Topic, cfg.RecoverWithin, visible); ok {
					catchUpMu.Lock()
					caughtUp[i] = d.Seconds()
					catchUpMu.Unlock()
				}
			}()
		}
	}
	nem.admin.Wait()
	if err := <-workDone; err != nil {
		rep.Errors = append(rep.Errors, "workload: "+err.Error())
	}
	// A fault counts as injected only if it was: an admin command that
	// failed or was refused is listed, not counted.
	nem.mu.Lock()
	for i := range rep.Faults {
		if err, ok := nem.adminFailed[i]; ok {
			rep.Faults[i].Skipped = "projectorctl: " + err
		}
		if rep.Faults[i].Skipped == "" {
			rep.FaultsPerKind[rep.Faults[i].Kind]++
		}
	}
	rep.Errors = append(rep.Errors, nem.serverErrs...)
	nem.mu.Unlock()
	quiet := time.Now()
	rep.EventsAppended, rep.ProduceFailures = t.events.Load(), t.failures.Load()
	t.mu.Lock()
	rep.UncertainStreams = len(t.uncertain)
	t.mu.Unlock()
	if billing {
		rep.EventsAppended, rep.ProduceFailures = bl.events.Load(), bl.failures.Load()
	}
	if wt != nil {
		rep.AppendsAcked, rep.AppendsNotWritten = wt.acks.Load(), wt.notWritten.Load()
		rep.AppendsConflicts, rep.AppendsUncertain, rep.AppendsInFlight = wt.conflicts.Load(), wt.uncertainN.Load(), wt.lost.Load()
		rep.EventsAppended, rep.ProduceFailures = rep.AppendsAcked, rep.AppendsUncertain+rep.AppendsInFlight
		wt.mu.Lock()
		for _, l := range wt.malformed {
			rep.Errors = append(rep.Errors, "writer line: "+l)
		}
		streams := map[string]bool{}
		for _, s := range wt.uncertain {
			streams[s] = true
		}
		rep.UncertainStreams = len(streams)
		wt.mu.Unlock()
	}
	logf("workload and faults done: %d events acked, %d produce failures, %d replicas live", rep.EventsAppended, rep.ProduceFailures, fl.size())
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	// Liveness: no rebuild left half-way, the live group's lag reaches 0,
	// every partition has a worker, every worker is ready.
	deadline := quiet.Add(cfg.RecoverWithin)
	for {
		lag, err := settled(ctx, store, proj, adm, liveGroup, cfg.Topic, visible)
		rep.LagAtEnd = lag
		if err == nil && lag == 0 {
			rep.RecoverySeconds = time.Since(quiet).Seconds()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("not settled %v after the last fault: lag %d (%v)", cfg.RecoverWithin, lag, err))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	logf("lag %d after %.1fs", rep.LagAtEnd, time.Since(quiet).Seconds())
	if rep.RecoverySeconds >= 0 {
		if err := checkOwnersAndReadiness(ctx, adm, liveGroup, cfg.Topic, cfg.Partitions, fl, time.Until(deadline.Add(30*time.Second))); err != nil {
			rep.Errors = append(rep.Errors, "liveness: "+err.Error())
		}
	}
	catchUp.Wait()
	for i, d := range caughtUp {
		rep.Faults[i].CatchUpSeconds = d
	}

	// Safety: every acked event applied exactly once, in order, by the
	// live version; every poison record parked as expected. Billing: the
	// live read model equals the generator's month.
	if billing {
		if err := checkBilling(ctx, rc, cfg.Namespace, bl.expected, rep); err != nil {
			rep.Errors = append(rep.Errors, "check: "+err.Error())
		}
		nem.mu.Lock()
		rep.Admin = append(rep.Admin, nem.adminE...)
		nem.mu.Unlock()
	} else if live, err := counting.Live(ctx); err != nil {
		rep.Errors = append(rep.Errors, "check: "+err.Error())
	} else {
		rep.LiveVersion = live.Name()
		ct := t
		if wt != nil {
			// The log first: what each stream holds against what the
			// writers were told; then its events 1..n, applied once.
			// Without the log's answer the uncertain appends cannot be
			// told apart, so the read model is not checked (the error
			// fails the run) rather than reported with made-up losses.
			if final, err = checkStreams(ctx, topo.Brokers, cfg.Topic, cfg.Partitions, cfg.Streams, wt, rep); err != nil {
				rep.Errors = append(rep.Errors, "check streams: "+err.Error())
			}
			ct = final
		}
		if ct != nil {
			if err := check(ctx, rc, live, cfg.Streams, ct, rep); err != nil {
				rep.Errors = append(rep.Errors, "check: "+err.Error())
			}
		}
		if vs, err := store.Versions(ctx, Projection); err != nil {
			rep.Errors = append(rep.Errors, "check: "+err.Error())
		} else {
			for _, r := range vs.Retiring {
				if name := framework.VersionedName(Projection, r.Version); r.Keep && name != live.Name() {
					nem.prefixCheck(ctx, name, "retired, kept by rebuild --keep")
				}
			}
		}
		nem.mu.Lock()
		cases := append([]PoisonCase(nil), nem.cases...)
		rep.Admin = append(rep.Admin, nem.adminE...)
		nem.mu.Unlock()
		pv, err := checkPoison(ctx, store, live, live.Name(), rc, cases)
		if err != nil {
			rep.Errors = append(rep.Errors, "check poison: "+err.Error())
		}
		for _, v := range pv {
			v.Violation.Detail = v.Detail
			rep.add(v.Violation)
		}
		rep.Poison = cases
	}
	if exits := fl.stopAll(30 * time.Second); len(exits) > 0 {
		rep.WorkerExits = append(rep.WorkerExits, exits...)
	}
	return rep, nil
}

func (r *Report) add(v Violation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ViolationCounts[v.Kind]++
	if len(r.Violations) < maxListed {
		r.Violations = append(r.Violations, v)
	}
}

// runProjectorctl runs the admin command against the run's servers. Redis
// is reached at the server that holds the projection's keys now (the
// Sentinels' master, or the Cluster master of its slot).
func runProjectorctl(ctx context.Context, cfg Config, group string, args ...string) error {
	addr, _, err := cfg.Topology.Redis.dataServer(ctx, "{"+cfg.projection()+"}")
	if err != nil {
		return err
	}
	full := append([]string{"--brokers", strings.Join(cfg.Topology.Brokers, ","), "--topic", cfg.Topic, "--group", group,
		"--namespace", cfg.Namespace, "--redis-url", "redis://" + addr, "--by", "projector-chaos",
		"--redis-wait-replicas", strconv.Itoa(cfg.WaitReplicas)}, args...)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.CtlBinary, full...)
	cmd.Env = append(os.Environ(), "PROJECTOR_REDIS_URL=", "PROJECTOR_KAFKA_BROKERS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("projectorctl %s: %v: %s", strings.Join(args, " "), err, lastLines(string(out), 6))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// settled returns the live group's lag once no rebuild is running (a
// rebuild still building counts as not settled, -1).
func settled(ctx context.Context, store *redischeckpoint.Store, projection string, adm *kadm.Client, liveGroup func(context.Context) (string, error), topic string, visible func(context.Context, map[int32][2]int64) (int64, error)) (int64, error) {
	vs, err := store.Versions(ctx, projection)
	if err != nil {
		return -1, err
	}
	if vs.Building != nil {
		return -1, fmt.Errorf("rebuild of version %d still building", vs.Building.Version)
	}
	g, err := liveGroup(ctx)
	if err != nil {
		return -1, err
	}
	lag, err := groupLag(ctx, adm, g, topic)
	if err != nil || lag == 0 || visible == nil {
		return lag, err
	}
	return visibleLag(ctx, adm, g, topic, visible)
}

// checkOwnersAndReadiness waits up to bound until every partition of
// topic is assigned to a member of the live group and every live worker
// answers /readyz with 200.
func checkOwnersAndReadiness(ctx context.Context, adm *kadm.Client, liveGroup func(context.Context) (string, error), topic string, partitions int32, fl *fleet, bound time.Duration) error {
	deadline := time.Now().Add(max(bound, 10*time.Second))
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		last = ownersAndReady(ctx, adm, liveGroup, topic, partitions, fl)
		if last == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return last
}

func ownersAndReady(ctx context.Context, adm *kadm.Client, liveGroup func(context.Context) (string, error), topic string, partitions int32, fl *fleet) error {
	g, err := liveGroup(ctx)
	if err != nil {
		return err
	}
	described, err := adm.DescribeGroups(ctx, g)
	if err != nil {
		return err
	}
	d, ok := described[g]
	if !ok || d.Err != nil {
		return fmt.Errorf("describe group %s: %v", g, d.Err)
	}
	owned := map[int32]bool{}
	for _, m := range d.Members {
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				if t.Topic == topic {
					for _, p := range t.Partitions {
						owned[p] = true
					}
				}
			}
		}
	}
	var orphans []string
	for p := range partitions {
		if !owned[p] {
			orphans = append(orphans, strconv.Itoa(int(p)))
		}
	}
	if len(orphans) > 0 {
		return fmt.Errorf("partitions %s of %s have no worker in group %s (%d members, state %s)", strings.Join(orphans, ","), topic, g, len(d.Members), d.State)
	}
	fl.mu.Lock()
	live := append([]*replica(nil), fl.live...)
	fl.mu.Unlock()
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, r := range live {
		addr, err := os.ReadFile(r.addFile)
		if err != nil {
			return fmt.Errorf("replica %s: no HTTP address: %v", r.id, err)
		}
		resp, err := hc.Get("http://" + string(addr) + "/readyz")
		if err != nil {
			return fmt.Errorf("replica %s /readyz: %v", r.id, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("replica %s /readyz: %d %s", r.id, resp.StatusCode, strings.TrimSpace(string(body)))
		}
	}
	return nil
}

func check(ctx context.Context, rc redis.UniversalClient, p *redischeckpoint.AtomicProjection, streams int, t *truth, rep *Report) error {
	return checkApplied(ctx, rc, p, streams, t, false, "", rep.add, &rep.EventsChecked)
}

// checkApplied checks the applied counts and times of p's read model
// against the ground truth and reports each violation to add. Complete:
// every acked sequence must be applied exactly once. Prefix (a retired
// version, or the live one before a replay resets it): the applied
// sequences of each stream must be 1..m, each once, m at most the acked.
// label, when set, is added to each violation's detail. checked, when
// set, counts the pairs checked.
func checkApplied(ctx context.Context, rc redis.UniversalClient, p *redischeckpoint.AtomicProjection, streams int, t *truth, prefix bool, label string, add func(Violation), checked *int64) error {
	report := func(v Violation) {
		if label != "" {
			v.Detail = strings.TrimSpace(v.Detail + " (" + label + ")")
		}
		add(v)
	}
	for i := range streams {
		s := StreamName(i)
		got, err := rc.HGetAll(ctx, p.Key(AppliedKeyPart, s)).Result()
		if err != nil {
			return err
		}
		at, err := rc.HGetAll(ctx, p.Key(AtKeyPart, s)).Result()
		if err != nil {
			return err
		}
		t.mu.Lock()
		acked, uncertain := t.acked[s], t.uncertain[s]
		t.mu.Unlock()
		counts := map[uint64]int64{}
		var seqs []uint64
		for field, v := range got {
			seq, err1 := strconv.ParseUint(field, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("%s: field %q = %q", s, field, v)
			}
			counts[seq] = n
			seqs = append(seqs, seq)
		}
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		upTo := acked
		if prefix {
			upTo = 0
			if len(seqs) > 0 {
				upTo = min(seqs[len(seqs)-1], acked)
			}
		}
		for seq := uint64(1); seq <= upTo; seq++ {
			if checked != nil {
				*checked++
			}
			switch n := counts[seq]; {
			case n == 0:
				report(Violation{Kind: "lost", Stream: s, Sequence: seq})
			case n > 1:
				report(Violation{Kind: "duplicated", Stream: s, Sequence: seq, Count: n})
			}
		}
		var prevAt int64
		for _, seq := range seqs {
			if ts, err := strconv.ParseInt(at[strconv.FormatUint(seq, 10)], 10, 64); err == nil {
				if ts < prevAt {
					report(Violation{Kind: "out-of-order", Stream: s, Sequence: seq,
						Detail: fmt.Sprintf("applied %s before sequence %d", time.Duration(prevAt-ts), seq-1)})
				}
				prevAt = ts
			}
			if seq <= acked {
				continue
			}
			// A failed produce may still have reached the log: acked+1 of an
			// uncertain stream may be applied once. So may acked+1 of any
			// stream in a prefix check during the workload: the event is in
			// flight (a worker can apply it before its producer has
			// recorded the broker's ack; a stream has one in flight at most).
			if (uncertain || prefix) && seq == acked+1 && counts[seq] == 1 {
				continue
			}
			report(Violation{Kind: "unexpected", Stream: s, Sequence: seq, Count: counts[seq]})
		}
	}
	return nil
}

// catchUpAfter measures how long the group takes, from now, to commit every
// record of topic appended before now.
func catchUpAfter(ctx context.Context, adm *kadm.Client, liveGroup func(context.Context) (string, error), topic string, bound time.Duration, visible func(context.Context, map[int32][2]int64) (int64, error)) (time.Duration, bool) {
	var lastVisible time.Time
	start := time.Now()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, false
	}
	for time.Since(start) < bound && ctx.Err() == nil {
		group, err := liveGroup(ctx)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil && committed.Error() == nil {
			done := true
			gaps := map[int32][2]int64{}
			var gap int64
			for p, end := range ends[topic] {
				if c, ok := committed.Lookup(topic, p); !ok || c.At < end.Offset {
					done = false
					from := int64(0)
					if ok && c.At >= 0 {
						from = c.At
					}
					gaps[p] = [2]int64{from, end.Offset}
					gap += end.Offset - from
				}
			}
			// Transaction markers and aborted records are never
			// committed past by themselves: a small gap may hold no
			// record a consumer gets (checked once a second at most).
			if !done && visible != nil && gap <= int64(4*len(ends[topic])) && time.Since(lastVisible) > time.Second {
				lastVisible = time.Now()
				if n, err := visible(ctx, gaps); err == nil && n == 0 {
					done = true
				}
			}
			if done {
				return time.Since(start), true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, false
}

// groupLag is the group's total lag on topic, from its committed offsets
// (ops.GroupLag: the lag projectorctl status shows).
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	l, err := ops.GroupLag(ctx, adm, topic, group)
	if err != nil {
		return -1, err
	}
	for _, p := range l.Partitions {
		if p.Error != "" || p.Lag < 0 {
			return -1, fmt.Errorf("lag of %s partition %d: %s", topic, p.Partition, p.Error)
		}
	}
	return l.Total, nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "seed            %d\n", r.Seed)
	fmt.Fprintf(w, "topology        %s\n", r.Topology)
	fmt.Fprintf(w, "fault kinds     %s (checkpoints wait for %d Redis replica(s))\n", strings.Join(r.Kinds, " "), r.WaitReplicas)
	fmt.Fprintf(w, "topic           %s (group %s, namespace %s)\n", r.Topic, r.Group, r.Namespace)
	if r.Workload == WorkloadBilling {
		fmt.Fprintf(w, "workload        billing: a generated MABIS month appended with kafkastore.Store, billing worker processes\n")
		fmt.Fprintf(w, "duration        %s, %d replicas at start (1..%d), session %s\n", r.Duration, r.Replicas, r.Replicas+1, r.Session)
	} else if r.Writers > 0 {
		fmt.Fprintf(w, "workload        counter: %d writer processes appending with guarded kafkastore.Stores (lease %s), counting worker processes\n", r.Writers, r.AppendLease)
		fmt.Fprintf(w, "duration        %s, %d replicas at start (1..%d), %d streams, session %s\n", r.Duration, r.Replicas, r.Replicas+1, r.Streams, r.Session)
	} else {
		fmt.Fprintf(w, "workload        counter: raw-producer events, counting worker processes\n")
		fmt.Fprintf(w, "duration        %s, %d replicas at start (1..%d), %d streams, session %s\n", r.Duration, r.Replicas, r.Replicas+1, r.Streams, r.Session)
	}
	if r.Writers > 0 {
		fmt.Fprintf(w, "appends         %d acked, %d not written, %d conflicts, %d uncertain, %d in flight at a writer's exit (about %d/s over %d partitions)\n",
			r.AppendsAcked, r.AppendsNotWritten, r.AppendsConflicts, r.AppendsUncertain, r.AppendsInFlight, r.Rate, r.Partitions)
		fmt.Fprintf(w, "streams         hold %d events at the end (%d streams had an uncertain append)\n", r.EventsInStreams, r.UncertainStreams)
	} else {
		fmt.Fprintf(w, "events appended %d acked at about %d/s over %d partitions (%d produce failures, %d streams stopped as uncertain)\n", r.EventsAppended, r.Rate, r.Partitions, r.ProduceFailures, r.UncertainStreams)
	}
	fmt.Fprintf(w, "fault schedule  (%d planned)\n", len(r.Schedule))
	for _, e := range r.Faults {
		s := "  " + e.Fault.String() + "  at " + e.Time.UTC().Format("15:04:05.000")
		if e.Target != "" {
			s += "  " + e.Target
		}
		if e.Skipped != "" {
			s += "  skipped: " + e.Skipped
		} else if e.CatchUpSeconds >= 0 {
			s += fmt.Sprintf("  caught up %.1fs", e.CatchUpSeconds)
		} else {
			s += "  NOT caught up"
		}
		fmt.Fprintln(w, s)
	}
	kinds := make([]string, 0, len(r.Kinds))
	for _, k := range r.Kinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, r.FaultsPerKind[k]))
	}
	fmt.Fprintf(w, "faults injected %s\n", strings.Join(kinds, " "))
	if med, mx, n := r.CatchUp(); n > 0 {
		fmt.Fprintf(w, "catch-up        after each fault: median %.1fs, max %.1fs (%d faults caught up)\n", med, mx, n)
		for _, k := range r.Kinds {
			if med, mx, n := r.CatchUpOf(k); n > 0 {
				fmt.Fprintf(w, "  %-15s median %.1fs, max %.1fs (%d of %d)\n", k, med, mx, n, r.FaultsPerKind[k])
			}
		}
	}
	if r.RecoverySeconds >= 0 {
		fmt.Fprintf(w, "recovery        lag 0 %.1fs after the workload and the last fault ended\n", r.RecoverySeconds)
	} else {
		fmt.Fprintf(w, "recovery        NOT REACHED (lag %d)\n", r.LagAtEnd)
	}
	if r.Workload == WorkloadBilling {
		fmt.Fprintf(w, "checked         %d quarter-hour values of every balance group, and every group's totals, in %s\n", r.EventsChecked, r.LiveVersion)
	} else {
		fmt.Fprintf(w, "checked         %d (stream, sequence) pairs in %s\n", r.EventsChecked, r.LiveVersion)
	}
	if len(r.Poison) > 0 {
		per := map[string]int{}
		for _, c := range r.Poison {
			per[c.Kind]++
		}
		var parts []string
		for _, k := range sortedKeys(per) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, per[k]))
		}
		fmt.Fprintf(w, "poison streams  %d checked parked as expected, held events not applied (%s)\n", len(r.Poison), strings.Join(parts, " "))
	}
	var counts []string
	for _, k := range sortedKeys(r.ViolationCounts) {
		counts = append(counts, fmt.Sprintf("%s=%d", k, r.ViolationCounts[k]))
	}
	fmt.Fprintf(w, "violations      %s\n", strings.Join(counts, " "))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %-12s %s seq %d (count %d) %s\n", v.Kind, v.Stream, v.Sequence, v.Count, v.Detail)
	}
	for _, c := range r.PrefixChecks {
		fmt.Fprintf(w, "prefix checked  %s\n", c)
	}
	for _, e := range r.Admin {
		fmt.Fprintf(w, "admin           %s\n", e)
	}
	for _, e := range r.WorkerExits {
		fmt.Fprintf(w, "worker exit     %s\n", e)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error           %s\n", e)
	}
	if r.Failed() {
		fmt.Fprintln(w, "result          FAIL")
	} else {
		fmt.Fprintln(w, "result          PASS")
	}
}

// CatchUp returns the median and maximum catch-up time of the injected
// faults that caught up, and how many did.
func (r *Report) CatchUp() (median, maxSec float64, n int) {
	return r.CatchUpOf("")
}

// CatchUpOf is CatchUp for the faults of one kind ("": every kind).
func (r *Report) CatchUpOf(kind string) (median, maxSec float64, n int) {
	var ds []float64
	for _, e := range r.Faults {
		if e.Skipped == "" && e.CatchUpSeconds >= 0 && (kind == "" || e.Kind == kind) {
			ds = append(ds, e.CatchUpSeconds)
		}
	}
	if len(ds) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(ds)
	return ds[len(ds)/2], ds[len(ds)-1], len(ds)
}

// WriteJSONFile writes the report as JSON to path.
func (r *Report) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
