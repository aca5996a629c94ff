package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/tcpproxy"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// DefaultWriterLease is the writers' kafkastore.Config.AppendLease in the
// suite (Config.AppendLease 0).
const DefaultWriterLease = 3 * time.Second

// DefaultWriterConcurrency is how many appends one writer process keeps
// in flight at most (WriterConfig.Concurrency 0): each of these goroutines
// appends synchronously, and a guarded append takes a few hundred
// milliseconds on three brokers with a Redis replica to wait for (appends
// in flight together share a transaction).
const DefaultWriterConcurrency = 16

// exactEvery: one in exactEvery appends of a writer expects the version
// the writer last saw of the stream (framework.ExactVersion); the others
// append with framework.AnyVersion.
const exactEvery = 10

// WriterConfig configures one writer process ("projector-chaos writer"):
// it appends one event per Append with a guarded kafkastore.Store, whose
// registry is redischeckpoint.AppendRegistry on the run's Redis, and
// prints every attempt and its outcome to Out.
type WriterConfig struct {
	Brokers      []string
	Topic        string
	Partitions   int32
	Redis        RedisTopology
	WaitReplicas int
	Namespace    string
	// ID names the process; event IDs are "<ID>-<n>".
	ID string
	// Slot is the writer's place among Writers: it starts the round robin
	// over the streams at Slot*Streams/Writers.
	Slot, Writers int
	Streams       int
	// Rate is this writer's appends per second, about.
	Rate        float64
	AppendLease time.Duration
	// Concurrency is how many appends the writer keeps in flight at most
	// (default DefaultWriterConcurrency).
	Concurrency int
	// Dial maps the real Kafka and Redis addresses to this writer's
	// proxies (nil: direct).
	Dial DialMap
	// Out receives the try and outcome lines (stdout).
	Out io.Writer
}

// RunWriter appends until ctx is cancelled (SIGTERM), then lets the appends
// in flight finish and returns. Lines, one per Write:
//
//	try <stream> <eventID>
//	ack <stream> <seq> <eventID>
//	notwritten <stream> <eventID>
//	conflict <stream> <eventID> <actual>
//	uncertain <stream> <eventID> <error>
func RunWriter(ctx context.Context, cfg WriterConfig) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || len(cfg.Redis.Addrs) == 0 || cfg.Namespace == "" || cfg.ID == "" || cfg.Streams <= 0 || cfg.Out == nil {
		return errors.New("chaos writer: brokers, topic, redis, namespace, id, streams and out are required")
	}
	cfg.Writers = max(cfg.Writers, 1)
	if cfg.Rate <= 0 {
		cfg.Rate = 100
	}
	if cfg.AppendLease <= 0 {
		cfg.AppendLease = DefaultWriterLease
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultWriterConcurrency
	}
	client := newRedisClient(cfg.Redis, cfg.Dial)
	defer client.Close()
	reg, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: client, Namespace: cfg.Namespace, WaitReplicas: cfg.WaitReplicas}, cfg.Topic)
	if err != nil {
		return fmt.Errorf("chaos writer: %w", err)
	}
	var opts []kgo.Opt
	if len(cfg.Dial) > 0 {
		opts = append(opts, kgo.Dialer(cfg.Dial.dial))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// The store's constructor may be cut off by a fault as any append:
	// retried until ctx ends.
	var st *kafkastore.Store
	for {
		st, err = kafkastore.New(ctx, kafkastore.Config{Seeds: cfg.Brokers, Topic: cfg.Topic, Partitions: cfg.Partitions,
			DontCreateTopics: true, Guard: reg, AppendLease: cfg.AppendLease, ClientOpts: opts, Logger: logger})
		if err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "chaos writer: open store: %v\n", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	defer st.Close()

	var (
		outMu sync.Mutex
		next  atomic.Uint64 // appends started
		seenM sync.Mutex
		seen  = map[string]uint64{} // stream -> version this writer last saw
	)
	emit := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		line = strings.ReplaceAll(line, "\n", " ") + "\n"
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = io.WriteString(cfg.Out, line)
	}
	setSeen := func(s string, v uint64) {
		seenM.Lock()
		if v > seen[s] {
			seen[s] = v
		}
		seenM.Unlock()
	}
	start := cfg.Slot * cfg.Streams / cfg.Writers
	interval := time.Duration(float64(time.Second) * float64(cfg.Concurrency) / cfg.Rate)
	appendOne := func() {
		n := next.Add(1)
		s := StreamName((start + int(n-1)) % cfg.Streams)
		id := cfg.ID + "-" + strconv.FormatUint(n, 10)
		expected := framework.AnyVersion
		// Every exactEvery-th append, shifted by one each round over
		// the streams, so that the exact ones do not all go to the same
		// few streams.
		if n%exactEvery == (n/uint64(cfg.Streams))%exactEvery {
			seenM.Lock()
			expected = framework.ExactVersion(seen[s])
			seenM.Unlock()
		}
		emit("try %s %s", s, id)
		// Not ctx: an append in flight at the end is finished, not
		// abandoned (it ends within the lease and the store's timeouts).
		actx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		evs, err := st.Append(actx, s, expected, []framework.EventData{{EventID: id, Type: eventType, Data: []byte(id)}})
		cancel()
		var conflict *framework.VersionConflictError
		switch {
		case err == nil && len(evs) == 1:
			setSeen(s, evs[0].Sequence)
			emit("ack %s %d %s", s, evs[0].Sequence, id)
		case err == nil:
			emit("uncertain %s %s Append returned %d events", s, id, len(evs))
		case errors.As(err, &conflict):
			setSeen(s, conflict.Actual)
			emit("conflict %s %s %d", s, id, conflict.Actual)
		case errors.Is(err, kafkastore.ErrNotWritten):
			emit("notwritten %s %s", s, id)
		default: // ErrAppendUncertain, and anything else
			emit("uncertain %s %s %v", s, id, err)
		}
	}
	var wg sync.WaitGroup
	for g := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the goroutines' ticks over the interval.
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval * time.Duration(g) / time.Duration(cfg.Concurrency)):
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if ctx.Err() != nil {
					return
				}
				appendOne()
			}
		}()
	}
	wg.Wait()
	return nil
}

// appendRef is where an acked event is: stream and sequence.
type appendRef struct {
	stream string
	seq    uint64
}

// writerTruth is the ground truth of a run with writer processes, built
// from their lines: per stream the acked (sequence -> event ID), and the
// event IDs whose outcome is unknown (an uncertain line, or a try without
// an outcome of a writer that exited).
type writerTruth struct {
	mu        sync.Mutex
	acked     map[string]map[uint64]string // stream -> seq -> event ID
	ackedIDs  map[string]appendRef
	uncertain map[string]string // event ID -> stream
	// refused are the event IDs reported not written or in conflict:
	// definitely not in any stream.
	refused  map[string]string            // event ID -> outcome
	inflight map[string]map[string]string // writer ID -> event ID -> stream

	acks, notWritten, conflicts, uncertainN, lost atomic.Int64
	// malformed are lines that do not parse (a violation of the protocol,
	// reported as errors).
	malformed []string
}

func newWriterTruth() *writerTruth {
	return &writerTruth{acked: map[string]map[uint64]string{}, ackedIDs: map[string]appendRef{},
		uncertain: map[string]string{}, refused: map[string]string{}, inflight: map[string]map[string]string{}}
}

// line records one line of writer w.
func (t *writerTruth) line(w, line string) {
	f := strings.SplitN(strings.TrimSpace(line), " ", 4)
	t.mu.Lock()
	defer t.mu.Unlock()
	bad := func() { t.malformed = append(t.malformed, w+": "+line) }
	fl := t.inflight[w]
	if fl == nil {
		fl = map[string]string{}
		t.inflight[w] = fl
	}
	if len(f) < 3 {
		bad()
		return
	}
	s, id := f[1], f[2]
	switch f[0] {
	case "try":
		fl[id] = s
		return
	case "ack":
		if len(f) != 4 {
			bad()
			return
		}
		seq, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			bad()
			return
		}
		id = f[3]
		if t.acked[s] == nil {
			t.acked[s] = map[uint64]string{}
		}
		if prev, ok := t.acked[s][seq]; ok && prev != id {
			// Two acks for one (stream, sequence): a fork the checker
			// also finds in the stream; kept as a malformed line so it
			// is reported even if the stream reads clean.
			t.malformed = append(t.malformed, fmt.Sprintf("%s: %s seq %d acked for %s and %s", w, s, seq, prev, id))
		}
		t.acked[s][seq] = id
		t.ackedIDs[id] = appendRef{s, seq}
		t.acks.Add(1)
	case "notwritten":
		t.refused[id] = "not written"
		t.notWritten.Add(1)
	case "conflict":
		t.refused[id] = "conflict"
		t.conflicts.Add(1)
	case "uncertain":
		t.uncertain[id] = s
		t.uncertainN.Add(1)
	default:
		bad()
		return
	}
	delete(fl, id)
}

// exited marks the tries of writer w without an outcome uncertain.
func (t *writerTruth) exited(w string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, s := range t.inflight[w] {
		t.uncertain[id] = s
		t.lost.Add(1)
		n++
	}
	delete(t.inflight, w)
	return n
}

// prefixTruth is a truth for a prefix check during the workload: per
// stream, the highest acked sequence plus the stream's uncertain and
// in-flight events, each of which may have been written below the next
// ack (checkApplied's prefix mode allows one more, the event in flight).
func (t *writerTruth) prefixTruth() *truth {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := &truth{acked: map[string]uint64{}, uncertain: map[string]bool{}}
	for s, seqs := range t.acked {
		for seq := range seqs {
			out.acked[s] = max(out.acked[s], seq)
		}
	}
	for _, s := range t.uncertain {
		out.acked[s]++
	}
	for _, fl := range t.inflight {
		for _, s := range fl {
			out.acked[s]++
		}
	}
	return out
}

// lineWriter passes complete lines of a writer's stdout to its truth, and
// copies them to the writer's log with the time they were read.
type lineWriter struct {
	w   string
	t   *writerTruth
	log io.Writer
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = fmt.Fprintf(l.log, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), l.buf[:i])
		l.t.line(l.w, string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// writerProc is one writer process.
type writerProc struct {
	*replica
	slot int
	// exited is closed once the process exited and its output was read.
	exited chan struct{}
	err    error
}

// writerFleet starts the writer processes and replaces killed ones.
type writerFleet struct {
	binary string
	topo   Topology
	args   []string // without --id, --slot, --dial
	dir    string
	t      *writerTruth
	logf   func(string, ...any)

	mu   sync.Mutex
	n    int
	live []*writerProc
	// stopped is set by stopAll: no writer starts after the workload.
	stopped bool
}

func (f *writerFleet) start(slot int) (*writerProc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, errors.New("the workload ended")
	}
	f.n++
	id := fmt.Sprintf("w%02d", f.n)
	logf, err := os.Create(filepath.Join(f.dir, id+".log"))
	if err != nil {
		return nil, err
	}
	r := &replica{id: id, log: logf}
	dial := DialMap{}
	kafka, rds := f.topo.proxied()
	for i, addr := range append(append([]string(nil), kafka...), rds...) {
		px, err := tcpproxy.New(addr)
		if err != nil {
			r.done()
			return nil, err
		}
		dial[addr] = px.Addr
		if i < len(kafka) {
			r.kafka = append(r.kafka, px)
		} else {
			r.redis = append(r.redis, px)
		}
	}
	r.cmd = exec.Command(f.binary, append(append([]string{"writer"}, f.args...),
		"--id", id, "--slot", strconv.Itoa(slot), "--dial", dial.String())...)
	r.cmd.Stdout = &lineWriter{w: id, t: f.t, log: logf}
	r.cmd.Stderr = logf
	if err := r.cmd.Start(); err != nil {
		r.done()
		return nil, fmt.Errorf("start writer %s: %w", id, err)
	}
	p := &writerProc{replica: r, slot: slot, exited: make(chan struct{})}
	go func() {
		p.err = r.cmd.Wait() // returns once stdout is read to the end
		if n := f.t.exited(id); n > 0 && f.logf != nil {
			f.logf("writer %s exited (%v) with %d append(s) in flight: uncertain", id, p.err, n)
		}
		r.done()
		close(p.exited)
	}()
	f.live = append(f.live, p)
	return p, nil
}

func (f *writerFleet) pick(p uint32) *writerProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.live) == 0 {
		return nil
	}
	return f.live[int(p)%len(f.live)]
}

func (f *writerFleet) remove(w *writerProc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.live {
		if x == w {
			f.live = append(f.live[:i], f.live[i+1:]...)
			return
		}
	}
}

// kill SIGKILLs the writer ft picks and starts a new one in its slot.
func (f *writerFleet) kill(pick uint32) (string, error) {
	w := f.pick(pick)
	if w == nil {
		return "", errors.New("no writer")
	}
	f.remove(w)
	_ = w.cmd.Process.Kill()
	<-w.exited
	nw, err := f.start(w.slot)
	if err != nil {
		return w.id, err
	}
	return w.id + " -> " + nw.id, nil
}

// zombie SIGSTOPs the writer pick selects for stop, then SIGCONTs it.
func (f *writerFleet) zombie(ctx context.Context, pick uint32, stop time.Duration) string {
	w := f.pick(pick)
	if w == nil {
		return ""
	}
	_ = w.cmd.Process.Signal(syscall.SIGSTOP)
	select {
	case <-time.After(stop):
	case <-ctx.Done():
	}
	_ = w.cmd.Process.Signal(syscall.SIGCONT)
	return w.id
}

// stopAll SIGTERMs every writer (after SIGCONT) and waits up to grace for
// its appends in flight to end, then SIGKILLs it. It returns the writers
// that exited with an error.
func (f *writerFleet) stopAll(grace time.Duration) []string {
	f.mu.Lock()
	live := append([]*writerProc(nil), f.live...)
	f.live = nil
	f.stopped = true
	f.mu.Unlock()
	var bad []string
	for _, w := range live {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range live {
		select {
		case <-w.exited:
			if w.err != nil {
				bad = append(bad, fmt.Sprintf("writer %s: %v", w.id, w.err))
			}
		case <-time.After(grace):
			_ = w.cmd.Process.Kill()
			<-w.exited
			bad = append(bad, "writer "+w.id+": did not stop within "+grace.String()+" of SIGTERM")
		}
	}
	return bad
}

// checkStreams reads every workload stream with a fresh Store and checks
// it against the writers' truth: sequences exactly 1..n with unique event
// IDs, every acked (sequence, ID) there, every other ID uncertain. It
// returns the truth for checkApplied: per stream n, the events the log
// holds, every one of which must be applied exactly once.
func checkStreams(ctx context.Context, brokers []string, topic string, partitions int32, streams int, t *writerTruth, rep *Report) (*truth, error) {
	// The last fault may have ended a moment ago: a broker still starting
	// closes connections or answers without a leader. Such errors are
	// retried for a while; a fork or a misplaced record is a violation at
	// once, and an error that outlasts the retries is one too.
	const retryFor = time.Minute
	var st *kafkastore.Store
	for start := time.Now(); ; {
		var err error
		st, err = kafkastore.New(ctx, kafkastore.Config{Seeds: brokers, Topic: topic, Partitions: partitions, DontCreateTopics: true})
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Since(start) > retryFor {
			return nil, err
		}
		time.Sleep(time.Second)
	}
	defer st.Close()
	out := &truth{acked: map[string]uint64{}, uncertain: map[string]bool{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range streams {
		s := StreamName(i)
		var events []framework.Event
		for start := time.Now(); ; {
			var err error
			events, err = readWholeStream(ctx, st, s)
			if err == nil {
				break
			}
			var fork *kafkastore.ForkError
			var pl *kafkastore.PlacementError
			switch {
			case errors.As(err, &fork):
				rep.add(Violation{Kind: "fork", Stream: s, Sequence: fork.Sequence,
					Detail: fmt.Sprintf("events %s (offset %d) and %s (offset %d) on partition %d", fork.FirstEventID, fork.FirstOffset, fork.OtherEventID, fork.OtherOffset, fork.Partition)})
			case errors.As(err, &pl):
				rep.add(Violation{Kind: "read-" + string(pl.Kind), Stream: s, Sequence: pl.Sequence, Detail: err.Error()})
			case ctx.Err() != nil:
				return nil, err
			case time.Since(start) < retryFor:
				time.Sleep(time.Second)
				continue
			default:
				rep.add(Violation{Kind: "read-error", Stream: s, Sequence: uint64(len(events)) + 1, Detail: err.Error()})
			}
			break
		}
		ids := map[string]uint64{}
		var n uint64
		for _, e := range events {
			if e.Sequence != n+1 {
				rep.add(Violation{Kind: "gap", Stream: s, Sequence: e.Sequence, Detail: fmt.Sprintf("after sequence %d (event %s)", n, e.EventID)})
			}
			n = e.Sequence
			if prev, ok := ids[e.EventID]; ok {
				rep.add(Violation{Kind: "duplicate-id", Stream: s, Sequence: e.Sequence, Detail: fmt.Sprintf("event %s also at sequence %d", e.EventID, prev)})
			}
			ids[e.EventID] = e.Sequence
			if want, ok := t.acked[s][e.Sequence]; ok && want != e.EventID {
				rep.add(Violation{Kind: "acked-mismatch", Stream: s, Sequence: e.Sequence, Detail: fmt.Sprintf("acked %s, stream holds %s", want, e.EventID)})
			}
			if _, ok := t.ackedIDs[e.EventID]; !ok {
				if _, ok := t.uncertain[e.EventID]; !ok {
					why := "never acked nor uncertain"
					if r, ok := t.refused[e.EventID]; ok {
						why = "reported " + r
					}
					rep.add(Violation{Kind: "unexpected", Stream: s, Sequence: e.Sequence, Detail: "event " + e.EventID + " " + why})
				}
			}
		}
		for seq, id := range t.acked[s] {
			if got, ok := ids[id]; !ok {
				rep.add(Violation{Kind: "lost", Stream: s, Sequence: seq, Detail: "acked event " + id + " not in the stream"})
			} else if got != seq {
				rep.add(Violation{Kind: "acked-mismatch", Stream: s, Sequence: seq, Detail: fmt.Sprintf("acked %s at %d, stream holds it at %d", id, seq, got)})
			}
		}
		out.acked[s] = n
		rep.EventsInStreams += int64(n)
	}
	return out, nil
}

// readWholeStream returns the events of stream s from its first sequence,
// and with an error the events read before it.
func readWholeStream(ctx context.Context, st *kafkastore.Store, s string) ([]framework.Event, error) {
	var events []framework.Event
	for e, err := range st.ReadStream(ctx, s, 0) {
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
	return events, nil
}

// visibleLag is the lag of group on topic counted in records a
// read_committed consumer gets (see visibleRecords).
func visibleLag(ctx context.Context, adm *kadm.Client, group, topic string, visible func(context.Context, map[int32][2]int64) (int64, error)) (int64, error) {
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
	ranges := map[int32][2]int64{}
	for p, end := range ends[topic] {
		from := int64(0)
		if c, ok := committed.Lookup(topic, p); ok && c.At >= 0 {
			from = c.At
		}
		if end.Offset > from {
			ranges[p] = [2]int64{from, end.Offset}
		}
	}
	if len(ranges) == 0 {
		return 0, nil
	}
	return visible(ctx, ranges)
}

// visibleRecords counts the records of topic a read_committed consumer
// gets in ranges (partition -> [from, to)), leaving out transaction
// markers and aborted records. It stops at the first record found (the
// count is then at least 1), or after 2 s without one.
func visibleRecords(ctx context.Context, brokers []string, topic string, ranges map[int32][2]int64) (int64, error) {
	offsets := map[int32]kgo.Offset{}
	for p, r := range ranges {
		offsets[p] = kgo.NewOffset().At(r[0])
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		return -1, err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var n int64
	for pctx.Err() == nil && n == 0 {
		fs := cl.PollFetches(pctx)
		fs.EachRecord(func(r *kgo.Record) {
			if rg, ok := ranges[r.Partition]; ok && r.Offset >= rg[0] && r.Offset < rg[1] {
				n++
			}
		})
	}
	if n == 0 && ctx.Err() != nil {
		return -1, ctx.Err()
	}
	return n, nil
}
