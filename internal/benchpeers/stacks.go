package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// result is one stack's run: from its first record to its last.
type result struct {
	elapsed    time.Duration
	cpu        time.Duration
	firstAfter time.Duration // from the stack's start to its first record
	counted    int64         // the sum of the per-stream counts
	keys       int           // streams counted
}

func (r result) recPerSec(records int) float64 { return float64(records) / r.elapsed.Seconds() }

func (r result) cpuMicrosPerRec(records int) float64 {
	return float64(r.cpu.Microseconds()) / float64(records)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter marks a Go stack's first and last record: add is called with the
// records a stack has counted, from any goroutine; done is closed when they
// reach target.
type meter struct {
	target      int64
	start       time.Time
	n           atomic.Int64
	mu          sync.Mutex
	first, last time.Time
	cpu0, cpu1  time.Duration
	done        chan struct{}
}

func newMeter(target int) *meter {
	return &meter{target: int64(target), start: time.Now(), done: make(chan struct{})}
}

func (m *meter) add(k int) {
	if k == 0 {
		return
	}
	n := m.n.Add(int64(k))
	if n == int64(k) {
		m.mu.Lock()
		m.first, m.cpu0 = time.Now(), cpuTime()
		m.mu.Unlock()
	}
	if n >= m.target && n-int64(k) < m.target {
		m.mu.Lock()
		m.last, m.cpu1 = time.Now(), cpuTime()
		m.mu.Unlock()
		close(m.done)
	}
}

// wait waits for the target, or fails after timeout or when failed says so.
func (m *meter) wait(timeout time.Duration, failed <-chan error) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-m.done:
	case err := <-failed:
		return fmt.Errorf("stopped after %d records: %v", m.n.Load(), err)
	case <-t.C:
		return fmt.Errorf("timeout after %v: counted %d of %d records", timeout, m.n.Load(), m.target)
	}
	// A rare interleaving can run the last mark before the first: wait for both.
	for {
		m.mu.Lock()
		ok := !m.first.IsZero() && !m.last.IsZero()
		m.mu.Unlock()
		if ok {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *meter) result() result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return result{elapsed: m.last.Sub(m.first), cpu: m.cpu1 - m.cpu0, firstAfter: m.first.Sub(m.start)}
}

// dedupe counts records per stream, skipping a sequence at or below the
// last one counted of its stream. One goroutine at a time.
type dedupe map[string]*streamCount

type streamCount struct {
	last  uint64
	count int64
}

// add reports whether the record was new.
func (d dedupe) add(stream []byte, seq uint64) bool {
	s := d[string(stream)]
	if s == nil {
		s = &streamCount{}
		d[string(stream)] = s
	}
	if seq <= s.last {
		return false
	}
	s.last = seq
	s.count++
	return true
}

// headers returns the stream ID and sequence of a record in the header
// contract.
func headers(key func(i int) (string, []byte), n int) ([]byte, uint64, error) {
	var stream, seq []byte
	for i := range n {
		k, v := key(i)
		switch k {
		case kafkastore.HeaderStreamID:
			stream = v
		case kafkastore.HeaderSequence:
			seq = v
		}
	}
	if stream == nil || seq == nil {
		return nil, 0, fmt.Errorf("a record without %s or %s", kafkastore.HeaderStreamID, kafkastore.HeaderSequence)
	}
	s, err := strconv.ParseUint(string(seq), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %q: %v", kafkastore.HeaderSequence, seq, err)
	}
	return stream, s, nil
}

func sumCounts(maps ...dedupe) (counted int64, keys int) {
	seen := map[string]bool{}
	for _, m := range maps {
		for k, s := range m {
			counted += s.count
			seen[k] = true
		}
	}
	return counted, len(seen)
}

// runRaw is the baseline: a franz-go poll loop in a new group (autocommit,
// the defaults), reading each record's stream and sequence from the headers,
// deduping and counting.
func runRaw(ctx context.Context, cfg config, topic, group string) (result, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	m := newMeter(cfg.records)
	counts := dedupe{}
	failed := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			fetches := cl.PollRecords(ctx, 1000)
			if err := fetches.Err0(); err != nil && ctx.Err() == nil {
				failed <- err
				return
			}
			n := 0
			for _, r := range fetches.Records() {
				stream, seq, err := headers(func(i int) (string, []byte) { return r.Headers[i].Key, r.Headers[i].Value }, len(r.Headers))
				if err != nil {
					failed <- err
					return
				}
				if counts.add(stream, seq) {
					n++
				}
			}
			m.add(n)
			select {
			case <-m.done:
				return
			default:
			}
		}
	}()
	if err := m.wait(cfg.timeout, failed); err != nil {
		cancel()
		return result{}, err
	}
	res := m.result()
	res.counted, res.keys = sumCounts(counts)
	return res, nil
}

// runSarama is a Sarama consumer group (default configuration but the
// protocol version and the initial offset), marking every message, with
// autocommit; each claim dedupes and counts its partition's streams.
func runSarama(ctx context.Context, cfg config, topic, group string) (result, error) {
	sc := sarama.NewConfig()
	sc.Version = sarama.V4_0_0_0
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	g, err := sarama.NewConsumerGroup(cfg.seeds, group, sc)
	if err != nil {
		return result{}, err
	}
	defer func() { _ = g.Close() }()
	h := &saramaHandler{m: newMeter(cfg.records), parts: map[int32]dedupe{}}
	failed := make(chan error, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for err := range g.Errors() {
			select {
			case failed <- err:
			default:
			}
		}
	}()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				select {
				case failed <- err:
				default:
				}
				return
			}
		}
	}()
	werr := h.m.wait(cfg.timeout, failed)
	cancel()
	<-consumed // every claim has returned: the maps are ours
	if werr != nil {
		return result{}, werr
	}
	res := h.m.result()
	maps := make([]dedupe, 0, len(h.parts))
	for _, d := range h.parts {
		maps = append(maps, d)
	}
	res.counted, res.keys = sumCounts(maps...)
	return res, nil
}

type saramaHandler struct {
	m     *meter
	mu    sync.Mutex
	parts map[int32]dedupe // a partition's streams, counted by its claim (mu guards the map, not the dedupes)
}

func (*saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	h.mu.Lock()
	counts := h.parts[claim.Partition()]
	if counts == nil {
		counts = dedupe{}
		h.parts[claim.Partition()] = counts
	}
	h.mu.Unlock()
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			stream, seq, err := headers(func(i int) (string, []byte) { return string(msg.Headers[i].Key), msg.Headers[i].Value }, len(msg.Headers))
			if err != nil {
				return err
			}
			if counts.add(stream, seq) {
				h.m.add(1)
			}
			sess.MarkMessage(msg, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

// runProjector is the runner with a projection that counts events per
// stream in memory, cursors in Redis (namespace group), default flush
// policy: BenchmarkRunnerVersusPollLoop's setup.
func runProjector(ctx context.Context, cfg config, store *kafkastore.Store, red redis.UniversalClient, group string) (result, error) {
	m := newMeter(cfg.records)
	var mu sync.Mutex
	counts := map[string]int64{}
	p := framework.ProjectionFunc(group, func(_ context.Context, e framework.Event) error {
		mu.Lock()
		counts[e.StreamID]++
		mu.Unlock()
		m.add(1)
		return nil
	})
	cps, err := redischeckpoint.New(redischeckpoint.Config{Client: red, Namespace: group})
	if err != nil {
		return result{}, err
	}
	r, err := kafkarunner.New(kafkarunner.Config{Seeds: cfg.seeds, Topic: store.Config().Topic, Group: group, Projection: p,
		Checkpoints: cps, Events: store})
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	failed := make(chan error, 1)
	go func() {
		err := <-done
		if ctx.Err() == nil || (err != nil && !errors.Is(err, context.Canceled)) {
			failed <- fmt.Errorf("runner stopped: %v", err)
		}
		close(failed)
	}()
	werr := m.wait(cfg.timeout, failed)
	cancel()
	if err := <-failed; err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return result{}, werr
	}
	res := m.result()
	mu.Lock()
	defer mu.Unlock()
	for _, n := range counts {
		res.counted += n
	}
	res.keys = len(counts)
	return res, nil
}

// runStreams runs the Kafka Streams app (a new application ID) with the
// given processing.guarantee and reads its report.
func runStreams(ctx context.Context, cfg config, topic, appID, guarantee string, v *versions) (result, error) {
	stateDir, err := os.MkdirTemp("", "benchpeers-streams-")
	if err != nil {
		return result{}, err
	}
	defer func() { _ = os.RemoveAll(stateDir) }()
	timeout := cfg.timeout + time.Minute
	if cfg.ksWarmup {
		timeout += cfg.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.java, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-jar", cfg.streamsJar,
		"--bootstrap", strings.Join(cfg.seeds, ","), "--topic", topic, "--app-id", appID, "--guarantee", guarantee,
		"--state-dir", stateDir, "--threads", strconv.Itoa(cfg.ksThreads), "--timeout-s", strconv.Itoa(int(cfg.timeout.Seconds())),
		"--warmup", strconv.FormatBool(cfg.ksWarmup))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%s: %v\n%s", cmd, err, tail(stderr.String(), 40))
	}
	kv, err := parseReport(stdout.String())
	if err != nil {
		return result{}, fmt.Errorf("%v\nstderr:\n%s", err, tail(stderr.String(), 40))
	}
	var res result
	var nums [5]int64
	for i, k := range []string{"sum", "keys", "elapsed_ns", "cpu_ns", "first_after_ms"} {
		n, err := strconv.ParseInt(kv[k], 10, 64)
		if err != nil {
			return result{}, fmt.Errorf("report %q: %s: %v", stdout.String(), k, err)
		}
		nums[i] = n
	}
	res.counted, res.keys = nums[0], int(nums[1])
	res.elapsed, res.cpu = time.Duration(nums[2]), time.Duration(nums[3])
	res.firstAfter = time.Duration(nums[4]) * time.Millisecond
	v.kafkaStreams, v.java = kv["kafka_streams"], kv["java"]
	return res, nil
}

// parseReport reads the Java app's last line of key=value pairs.
func parseReport(out string) (map[string]string, error) {
	var line string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "processed=") {
			line = sc.Text()
		}
	}
	if line == "" {
		return nil, fmt.Errorf("no report in the Kafka Streams app's output %q", tail(out, 10))
	}
	kv := map[string]string{}
	for f := range strings.FieldsSeq(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("report %q: field %q is not key=value", line, f)
		}
		kv[k] = v
	}
	return kv, nil
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
