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
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
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
	// RecoverWithin bounds the wait for lag 0 after the last fault.
	RecoverWithin time.Duration

	Brokers   []string
	RedisAddr string
	Topic     string // created; must not exist
	Namespace string // Redis key namespace
	// WorkerBinary is run as "<WorkerBinary> worker --flags".
	WorkerBinary string
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
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// GroupName is the consumer group of the workers of a run on topic.
func GroupName(topic string) string { return topic + ".counter" }

// Violation is one (stream, sequence) whose applied count is wrong.
type Violation struct {
	Kind     string `json:"kind"` // lost, duplicated, unexpected
	Stream   string `json:"stream"`
	Sequence uint64 `json:"sequence"`
	Count    int64  `json:"count"`
}

// maxListed caps the violations listed in a report (all are counted).
const maxListed = 50

// Report is the outcome of a run.
type Report struct {
	Seed            uint64         `json:"seed"`
	Topology        string         `json:"topology"`
	Topic           string         `json:"topic"`
	Namespace       string         `json:"namespace"`
	Group           string         `json:"group"`
	Duration        string         `json:"duration"`
	Replicas        int            `json:"replicas"`
	Streams         int            `json:"streams"`
	Session         string         `json:"session_timeout"`
	EventsAppended  int64          `json:"events_appended"`
	ProduceFailures int64          `json:"produce_failures"`
	Schedule        []Fault        `json:"schedule"`
	Faults          []Event        `json:"faults"`
	FaultsPerKind   map[string]int `json:"faults_per_kind"`
	// RecoverySeconds is the time from the end of the workload and of the
	// last fault to the group's lag 0 (-1: not reached).
	RecoverySeconds float64        `json:"recovery_seconds"`
	LagAtEnd        int64          `json:"lag_at_end"`
	EventsChecked   int64          `json:"events_checked"`
	ViolationCounts map[string]int `json:"violation_counts"`
	Violations      []Violation    `json:"violations"`
	WorkerExits     []string       `json:"worker_exit_errors,omitempty"`
	Errors          []string       `json:"errors,omitempty"`
}

// Failed reports whether the run found a violation or could not finish.
func (r *Report) Failed() bool {
	n := 0
	for _, c := range r.ViolationCounts {
		n += c
	}
	return n > 0 || len(r.Errors) > 0 || r.LagAtEnd != 0
}

// Run runs the suite once.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 || cfg.RedisAddr == "" || cfg.Topic == "" || cfg.Namespace == "" || cfg.WorkerBinary == "" || cfg.WorkDir == "" {
		return nil, errors.New("chaos: Brokers, RedisAddr, Topic, Namespace, WorkerBinary and WorkDir are required")
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
	}
	rep := &Report{
		Seed:     cfg.Seed,
		Topology: fmt.Sprintf("single-node Kafka %s, Redis %s", strings.Join(cfg.Brokers, ","), cfg.RedisAddr),
		Topic:    cfg.Topic, Namespace: cfg.Namespace, Duration: cfg.Duration.String(),
		Replicas: cfg.Replicas, Streams: cfg.Streams, Session: cfg.Session.String(),
		FaultsPerKind: map[string]int{}, ViolationCounts: map[string]int{"lost": 0, "duplicated": 0, "unexpected": 0},
		RecoverySeconds: -1, LagAtEnd: -1,
	}
	rep.Schedule = Schedule(cfg.Seed, cfg.Duration, cfg.Session)
	for _, f := range rep.Schedule {
		logf("planned %s", f)
	}

	// The topics (event topic and catalog), created as an application
	// would, with the store; the workload then writes with its own client.
	st, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cfg.Brokers, Topic: cfg.Topic, Partitions: cfg.Partitions, ReplicationFactor: -1})
	if err != nil {
		return nil, fmt.Errorf("chaos: create topic: %w", err)
	}
	st.Close()
	const projection = "chaos-counter"
	group := GroupName(cfg.Topic)
	rep.Group = group

	fl := &fleet{
		binary: cfg.WorkerBinary, dir: cfg.WorkDir, min: 1, max: cfg.Replicas + 1, kafka: cfg.Brokers[0],
		args: []string{"--brokers", strings.Join(cfg.Brokers, ","), "--topic", cfg.Topic, "--group", group,
			"--redis", cfg.RedisAddr, "--namespace", cfg.Namespace, "--projection", projection,
			"--session-timeout", cfg.Session.String()},
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

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	t := &truth{acked: map[string]uint64{}, uncertain: map[string]bool{}}
	start := time.Now()
	wctx, stopWorkload := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer stopWorkload()
	workDone := make(chan error, 1)
	go func() { workDone <- runWorkload(wctx, cfg.Brokers, cfg.Topic, cfg.Streams, cfg.Rate, t) }()

	var (
		catchUp   sync.WaitGroup
		catchUpMu sync.Mutex
		caughtUp  = map[int]float64{} // index in rep.Faults -> seconds
	)
	defer catchUp.Wait() // before the admin client closes
	for _, f := range rep.Schedule {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(f.At))):
		}
		if ctx.Err() != nil {
			break
		}
		ev := fl.inject(ctx, f, logf)
		ev.CatchUpSeconds = -1
		rep.Faults = append(rep.Faults, ev)
		if ev.Skipped == "" {
			rep.FaultsPerKind[f.Kind]++
			i := len(rep.Faults) - 1
			catchUp.Add(1)
			go func() {
				defer catchUp.Done()
				if d, ok := catchUpAfter(ctx, adm, group, cfg.Topic, cfg.RecoverWithin); ok {
					catchUpMu.Lock()
					caughtUp[i] = d.Seconds()
					catchUpMu.Unlock()
				}
			}()
		}
	}
	if err := <-workDone; err != nil {
		rep.Errors = append(rep.Errors, "workload: "+err.Error())
	}
	quiet := time.Now()
	rep.EventsAppended, rep.ProduceFailures = t.events.Load(), t.failures.Load()
	logf("workload and faults done: %d events acked, %d produce failures, %d replicas live", rep.EventsAppended, rep.ProduceFailures, fl.size())
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	// Liveness: the group's lag reaches 0.
	deadline := quiet.Add(cfg.RecoverWithin)
	for {
		lag, err := groupLag(ctx, adm, group, cfg.Topic)
		if err == nil {
			rep.LagAtEnd = lag
		}
		if err == nil && lag == 0 {
			rep.RecoverySeconds = time.Since(quiet).Seconds()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("lag %d (%v) %v after the last fault", lag, err, cfg.RecoverWithin))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	logf("lag %d after %.1fs", rep.LagAtEnd, time.Since(quiet).Seconds())
	catchUp.Wait()
	for i, d := range caughtUp {
		rep.Faults[i].CatchUpSeconds = d
	}

	// Safety: every acked event applied exactly once.
	if err := check(ctx, cfg, projection, t, rep); err != nil {
		rep.Errors = append(rep.Errors, "check: "+err.Error())
	}
	if exits := fl.stopAll(30 * time.Second); len(exits) > 0 {
		rep.WorkerExits = append(rep.WorkerExits, exits...)
	}
	return rep, nil
}

func check(ctx context.Context, cfg Config, projection string, t *truth, rep *Report) error {
	_, p, closeFn, err := openProjection(cfg.RedisAddr, cfg.Namespace, projection)
	if err != nil {
		return err
	}
	defer closeFn()
	rc := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	defer rc.Close()
	add := func(v Violation) {
		rep.ViolationCounts[v.Kind]++
		if len(rep.Violations) < maxListed {
			rep.Violations = append(rep.Violations, v)
		}
	}
	for i := range cfg.Streams {
		s := StreamName(i)
		got, err := rc.HGetAll(ctx, p.Key(AppliedKeyPart, s)).Result()
		if err != nil {
			return err
		}
		acked := t.acked[s]
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
		for seq := uint64(1); seq <= acked; seq++ {
			rep.EventsChecked++
			switch n := counts[seq]; {
			case n == 0:
				add(Violation{Kind: "lost", Stream: s, Sequence: seq})
			case n > 1:
				add(Violation{Kind: "duplicated", Stream: s, Sequence: seq, Count: n})
			}
		}
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		for _, seq := range seqs {
			if seq <= acked {
				continue
			}
			// A failed produce may still have reached the log: acked+1 of an
			// uncertain stream may be applied once.
			if t.uncertain[s] && seq == acked+1 && counts[seq] == 1 {
				continue
			}
			add(Violation{Kind: "unexpected", Stream: s, Sequence: seq, Count: counts[seq]})
		}
	}
	return nil
}

// catchUpAfter measures how long the group takes, from now, to commit every
// record of topic appended before now.
func catchUpAfter(ctx context.Context, adm *kadm.Client, group, topic string, bound time.Duration) (time.Duration, bool) {
	start := time.Now()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, false
	}
	for time.Since(start) < bound && ctx.Err() == nil {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil && committed.Error() == nil {
			done := true
			for p, end := range ends[topic] {
				if c, ok := committed.Lookup(topic, p); !ok || c.At < end.Offset {
					done = false
					break
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

// groupLag is the group's total lag on topic, from its committed offsets.
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return -1, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return -1, err
	}
	var total int64
	for p, end := range ends[topic] {
		from := int64(0)
		if c, ok := committed.Lookup(topic, p); ok && c.At >= 0 {
			from = c.At
		}
		total += max(end.Offset-from, 0)
	}
	return total, nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "seed            %d\n", r.Seed)
	fmt.Fprintf(w, "topology        %s\n", r.Topology)
	fmt.Fprintf(w, "topic           %s (group %s, namespace %s)\n", r.Topic, r.Group, r.Namespace)
	fmt.Fprintf(w, "duration        %s, %d replicas at start (1..%d), %d streams, session %s\n", r.Duration, r.Replicas, r.Replicas+1, r.Streams, r.Session)
	fmt.Fprintf(w, "events appended %d acked (%d produce failures)\n", r.EventsAppended, r.ProduceFailures)
	fmt.Fprintf(w, "fault schedule  (%d planned)\n", len(r.Schedule))
	for _, e := range r.Faults {
		s := "  " + e.Fault.String() + "  at " + e.Time.UTC().Format("15:04:05.000")
		if e.Replica != "" {
			s += "  " + e.Replica
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
	kinds := make([]string, 0, len(FaultKinds))
	for _, k := range FaultKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, r.FaultsPerKind[k]))
	}
	fmt.Fprintf(w, "faults injected %s\n", strings.Join(kinds, " "))
	if med, mx, n := r.CatchUp(); n > 0 {
		fmt.Fprintf(w, "catch-up        after each fault: median %.1fs, max %.1fs (%d faults)\n", med, mx, n)
	}
	if r.RecoverySeconds >= 0 {
		fmt.Fprintf(w, "recovery        lag 0 %.1fs after the workload and the last fault ended\n", r.RecoverySeconds)
	} else {
		fmt.Fprintf(w, "recovery        NOT REACHED (lag %d)\n", r.LagAtEnd)
	}
	fmt.Fprintf(w, "checked         %d (stream, sequence) pairs\n", r.EventsChecked)
	fmt.Fprintf(w, "violations      lost=%d duplicated=%d unexpected=%d\n", r.ViolationCounts["lost"], r.ViolationCounts["duplicated"], r.ViolationCounts["unexpected"])
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %-10s %s seq %d (count %d)\n", v.Kind, v.Stream, v.Sequence, v.Count)
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
	var ds []float64
	for _, e := range r.Faults {
		if e.Skipped == "" && e.CatchUpSeconds >= 0 {
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
