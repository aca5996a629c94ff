package kafkastore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Environment of a writer process (see writerMain).
const (
	envWriter    = "PROJECTOR_TEST_WRITER"
	envTopic     = "PROJECTOR_TEST_TOPIC"
	envNamespace = "PROJECTOR_TEST_NAMESPACE"
	// envWriterSeeds overrides the brokers (the HA cluster).
	envWriterSeeds = "PROJECTOR_TEST_WRITER_SEEDS"
	// envWriterSingle makes the writer a Store without a guard
	// (Config.SingleWriter): what every Store was before the guard.
	envWriterSingle = "PROJECTOR_TEST_WRITER_SINGLE"
	// envWriterLease sets Config.AppendLease.
	envWriterLease = "PROJECTOR_TEST_WRITER_LEASE"
	// envWriterStep and envWriterAt: at that step of its first append,
	// the writer SIGKILLs itself ("kill"), or prints "at <step>" and
	// sleeps a second, for the test to SIGSTOP it there ("stop").
	envWriterStep = "PROJECTOR_TEST_WRITER_STEP"
	envWriterAt   = "PROJECTOR_TEST_WRITER_AT"
)

// writerMain runs a writer process: it appends on command, one command
// per line on stdin, and answers one line each on stdout:
//
//	append <stream> <any|none|N> <count> → ok <first> <last> <first event ID> | conflict <actual> | err <message>
func writerMain() int {
	ns := os.Getenv(envNamespace)
	seeds := strings.Split(os.Getenv(testenv.EnvKafkaSeeds), ",")
	if s := os.Getenv(envWriterSeeds); s != "" {
		seeds = strings.Split(s, ",")
	}
	cfg := kafkastore.Config{Seeds: seeds, Topic: os.Getenv(envTopic), ReplicationFactor: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())}
	if n, err := strconv.Atoi(os.Getenv("PROJECTOR_TEST_WRITER_PARTITIONS")); err == nil {
		cfg.Partitions = int32(n)
	}
	if d, err := time.ParseDuration(os.Getenv(envWriterLease)); err == nil {
		cfg.AppendLease = d
	}
	if os.Getenv(envWriterSingle) == "1" {
		cfg.SingleWriter = true
	} else {
		client := redis.NewClient(&redis.Options{Addr: os.Getenv(testenv.EnvRedisAddr)})
		defer client.Close()
		guard, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: client, Namespace: ns}, cfg.Topic)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg.Guard = guard
	}
	if os.Getenv("PROJECTOR_TEST_WRITER_TIMING") == "1" {
		var mu sync.Mutex
		last := time.Now()
		sum := map[string]time.Duration{}
		count := map[string]int{}
		kafkastore.SetAppendHook(func(step, _ string) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if step != "reserved" {
				sum[step] += now.Sub(last)
				count[step]++
				last = now
			}
			if step == "registered" && count[step]%200 == 0 {
				for _, k := range []string{"produced", "recorded", "committed", "registered"} {
					fmt.Fprintf(os.Stderr, "%s %v (%d) ", k, sum[k]/time.Duration(max(count[k], 1)), count[k])
				}
				fmt.Fprintln(os.Stderr)
			}
		})
	}
	if step := os.Getenv(envWriterStep); step != "" {
		var once sync.Once
		kafkastore.SetAppendHook(func(s, _ string) {
			if s != step {
				return
			}
			once.Do(func() {
				if os.Getenv(envWriterAt) == "kill" {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
				fmt.Println("at " + s)
				time.Sleep(time.Second)
			})
		})
	}
	ctx := context.Background()
	st, err := kafkastore.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer st.Close()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 5 && f[0] == "bulk" {
			fmt.Println(bulk(ctx, st, f[1:]))
			continue
		}
		if len(f) != 4 || f[0] != "append" {
			fmt.Println("err bad command")
			continue
		}
		expected := framework.AnyVersion
		switch f[2] {
		case "any":
		case "none":
			expected = framework.NoStream
		default:
			v, _ := strconv.ParseUint(f[2], 10, 64)
			expected = framework.ExactVersion(v)
		}
		n, _ := strconv.Atoi(f[3])
		events := make([]framework.EventData, n)
		for i := range events {
			events[i] = framework.EventData{Type: "Written", Data: []byte(strconv.Itoa(os.Getpid()))}
		}
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		got, err := st.Append(actx, f[1], expected, events)
		cancel()
		var conflict *framework.VersionConflictError
		switch {
		case err == nil:
			fmt.Printf("ok %d %d %s\n", got[0].Sequence, got[len(got)-1].Sequence, got[0].EventID)
		case errors.As(err, &conflict):
			fmt.Printf("conflict %d\n", conflict.Actual)
		default:
			fmt.Printf("err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	return 0
}

// bulk runs "bulk <stream prefix> <appends> <goroutines> <distinct|same>":
// appends of one event each, to a stream per append (distinct) or all to
// the prefix itself (same), with AnyVersion, and answers "done <ok> <failed>".
func bulk(ctx context.Context, st *kafkastore.Store, args []string) string {
	n, _ := strconv.Atoi(args[1])
	conc, _ := strconv.Atoi(args[2])
	var next, failed, uncertain atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				stream := args[0]
				switch args[3] {
				case "distinct":
					stream += "/" + strconv.FormatInt(i, 10)
				case "ten":
					stream += "/" + strconv.FormatInt(i%10, 10)
				case "sixtyfour":
					stream += "/" + strconv.FormatInt(i%64+1, 10)
				}
				if _, err := st.Append(ctx, stream, framework.AnyVersion, []framework.EventData{{Type: "Written", Data: make([]byte, 200)}}); err != nil {
					if !errors.Is(err, kafkastore.ErrNotWritten) {
						uncertain.Add(1)
					}
					if failed.Add(1) <= 3 {
						fmt.Fprintln(os.Stderr, "bulk append:", err)
					}
				}
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("done %d %d %d", int64(n)-failed.Load(), failed.Load(), uncertain.Load())
}

// writerProc is a writer process seen from the test.
type writerProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startWriter starts this test binary as a writer process on topic (see
// writerMain), with more environment in env.
func startWriter(t testing.TB, topic, ns string, env ...string) *writerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envWriter+"=1", envTopic+"="+topic, envNamespace+"="+ns), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writerProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	if line := w.line(t); line != "ready" {
		t.Fatalf("writer process: %q, want ready", line)
	}
	return w
}

func (w *writerProc) send(t testing.TB, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		t.Fatal(err)
	}
}

func (w *writerProc) line(t testing.TB) string {
	t.Helper()
	if !w.out.Scan() {
		t.Fatalf("writer process %d ended: %v", w.cmd.Process.Pid, w.out.Err())
	}
	return w.out.Text()
}

// do sends an append and returns the answer.
func (w *writerProc) do(t testing.TB, cmd string) string {
	t.Helper()
	w.send(t, cmd)
	return w.line(t)
}

// writersFixture is a topic, a Redis namespace and a reading Store.
type writersFixture struct {
	topic, ns string
	store     *kafkastore.Store // reads
}

func newWritersFixture(t testing.TB, partitions int32) *writersFixture {
	t.Helper()
	env := testenv.Kafka(t)
	rds := testenv.Redis(t)
	if env.Kind != testenv.KindEnv || rds.Kind != testenv.KindEnv {
		if testenv.RequireReal() {
			t.Fatal("writer processes need servers given by environment (scripts/test.sh)")
		}
		t.Skipf("writer processes need servers given by environment, not %s/%s", env.Kind, rds.Kind)
	}
	topic := env.TopicName(t, "events")
	s, err := kafkastore.New(ctxFor(t), kafkastore.Config{Seeds: env.Seeds, Topic: topic, Partitions: partitions, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &writersFixture{topic: topic, ns: "writers-" + strconv.FormatInt(time.Now().UnixNano(), 36), store: s}
}

func (f *writersFixture) start(t testing.TB, env ...string) *writerProc {
	return startWriter(t, f.topic, f.ns, env...)
}

// readAll reads a stream through a fresh Store (a reader that saw none of
// the appends) and checks that its sequences are 1..n, each once.
func (f *writersFixture) readAll(t testing.TB, stream string) []framework.Event {
	t.Helper()
	fresh, err := kafkastore.New(ctxFor(t), kafkastore.Config{Seeds: f.store.Config().Seeds, Topic: f.topic})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	var got []framework.Event
	for e, err := range fresh.ReadStream(ctxFor(t), stream, 0) {
		if err != nil {
			t.Fatalf("ReadStream(%s): %v", stream, err)
		}
		if e.Sequence != uint64(len(got)+1) {
			t.Fatalf("ReadStream(%s): sequence %d after %d", stream, e.Sequence, len(got))
		}
		got = append(got, e)
	}
	v, err := fresh.StreamVersion(ctxFor(t), stream)
	if err != nil || v != uint64(len(got)) {
		t.Fatalf("StreamVersion(%s) = %d, %v; the stream holds %d", stream, v, err, len(got))
	}
	return got
}

// race sends cmd to every writer at once and returns their answers.
func race(t testing.TB, writers []*writerProc, cmd string) []string {
	t.Helper()
	for _, w := range writers {
		w.send(t, cmd)
	}
	answers := make([]string, len(writers))
	for i, w := range writers {
		answers[i] = w.line(t)
	}
	return answers
}

// TestWriterProcessesRaceForOneVersion: two writer processes append to the
// same stream with the same expected version, round after round, on new
// and on existing streams. Exactly one wins each round; the loser gets a
// version conflict naming the version the winner made.
func TestWriterProcessesRaceForOneVersion(t *testing.T) {
	f := newWritersFixture(t, 3)
	writers := []*writerProc{f.start(t), f.start(t)}
	const rounds = 100
	for round := range rounds {
		stream := fmt.Sprintf("process/race/%03d", round)
		for version := range 3 {
			expected := "none"
			if version > 0 {
				expected = strconv.Itoa(version)
			}
			answers := race(t, writers, fmt.Sprintf("append %s %s 1", stream, expected))
			won, lost := 0, 0
			for _, a := range answers {
				switch {
				case a == fmt.Sprintf("conflict %d", version+1):
					lost++
				case strings.HasPrefix(a, fmt.Sprintf("ok %d %d ", version+1, version+1)):
					won++
				default:
					t.Fatalf("round %d, %s at %s: answer %q", round, stream, expected, a)
				}
			}
			if won != 1 || lost != 1 {
				t.Fatalf("round %d, %s at %s: answers %q, want one winner and one conflict at %d", round, stream, expected, answers, version+1)
			}
		}
	}
	for round := range rounds {
		if got := f.readAll(t, fmt.Sprintf("process/race/%03d", round)); len(got) != 3 {
			t.Fatalf("stream %d holds %d events, want 3", round, len(got))
		}
	}
}

// TestWriterProcessesAppendAnyVersion: three writer processes append to
// the same streams without expectations; every stream ends with unique,
// contiguous sequences, one per acknowledged append.
func TestWriterProcessesAppendAnyVersion(t *testing.T) {
	f := newWritersFixture(t, 3)
	writers := []*writerProc{f.start(t), f.start(t), f.start(t)}
	const streams, perWriter = 4, 60
	acked := map[string]map[string]bool{} // stream → event IDs acknowledged
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				stream := fmt.Sprintf("process/any/%d", i%streams)
				w.send(t, "append "+stream+" any 1")
				a := w.line(t)
				fields := strings.Fields(a)
				if len(fields) != 4 || fields[0] != "ok" {
					t.Errorf("AnyVersion append to %s: %q", stream, a)
					return
				}
				mu.Lock()
				if acked[stream] == nil {
					acked[stream] = map[string]bool{}
				}
				acked[stream][fields[3]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for stream, ids := range acked {
		got := f.readAll(t, stream)
		if len(got) != len(ids) {
			t.Errorf("%s holds %d events, %d appends were acknowledged", stream, len(got), len(ids))
		}
		for _, e := range got {
			if !ids[e.EventID] {
				t.Errorf("%s@%d: event %s was never acknowledged", stream, e.Sequence, e.EventID)
			}
		}
		total += len(got)
	}
	if total != len(writers)*perWriter {
		t.Errorf("%d events in all, want %d", total, len(writers)*perWriter)
	}
}

// appendSteps are the steps of a guarded append, in order.
var appendSteps = []string{"reserved", "produced", "recorded", "committed", "registered"}

// TestWriterKilledAtEachStepOfAnAppend: a writer process is SIGKILLed at
// each step of an append. The next writer of the stream completes or
// drops what it left (after its lease), the stream stays contiguous, and
// the killed append's events are there exactly when its transaction
// committed.
func TestWriterKilledAtEachStepOfAnAppend(t *testing.T) {
	f := newWritersFixture(t, 3)
	healthy := f.start(t, envWriterLease+"=2s")
	for _, step := range appendSteps {
		t.Run(step, func(t *testing.T) {
			stream := "process/killed/" + step
			if a := healthy.do(t, "append "+stream+" none 2"); !strings.HasPrefix(a, "ok 1 2 ") {
				t.Fatalf("first append: %q", a)
			}
			doomed := f.start(t, envWriterLease+"=2s", envWriterStep+"="+step, envWriterAt+"=kill")
			doomed.send(t, "append "+stream+" 2 3")
			if err := doomed.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("the writer was not killed at %s: %v", step, err)
			}
			committed := step == "committed" || step == "registered"
			wantHead := 2
			if committed {
				wantHead = 5
			}
			// The stale expectation loses; the right one wins.
			if a := healthy.do(t, "append "+stream+" 2 1"); committed && a != "conflict 5" || !committed && !strings.HasPrefix(a, "ok 3 3 ") {
				t.Fatalf("append at version 2 after the kill at %s: %q (head should be %d)", step, a, wantHead)
			}
			if committed {
				if a := healthy.do(t, "append "+stream+" 5 1"); !strings.HasPrefix(a, "ok 6 6 ") {
					t.Fatalf("append at version 5: %q", a)
				}
				wantHead = 6
			} else {
				wantHead = 3
			}
			if got := f.readAll(t, stream); len(got) != wantHead {
				t.Fatalf("the stream holds %d events, want %d", len(got), wantHead)
			}
		})
	}
}

// TestWriterFrozenPastItsLease: a writer process is SIGSTOPped at a step of
// an append for longer than its lease; another writer appends to the
// stream meanwhile (repairing the frozen append: its producer is fenced).
// When the frozen writer wakes (SIGCONT) it cannot fork the stream: before
// its transaction committed, its append fails as not written; after, its
// append stands and the other writer's came after it.
func TestWriterFrozenPastItsLease(t *testing.T) {
	f := newWritersFixture(t, 3)
	healthy := f.start(t, envWriterLease+"=2s")
	for _, step := range appendSteps {
		t.Run(step, func(t *testing.T) {
			stream := "process/frozen/" + step
			if a := healthy.do(t, "append "+stream+" none 1"); !strings.HasPrefix(a, "ok 1 1 ") {
				t.Fatalf("first append: %q", a)
			}
			zombie := f.start(t, envWriterLease+"=2s", envWriterStep+"="+step, envWriterAt+"=stop")
			zombie.send(t, "append "+stream+" 1 1")
			if a := zombie.line(t); a != "at "+step {
				t.Fatalf("zombie: %q", a)
			}
			if err := zombie.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // past the lease
			committed := step == "committed" || step == "registered"
			a := healthy.do(t, "append "+stream+" any 1")
			if committed && !strings.HasPrefix(a, "ok 3 3 ") || !committed && !strings.HasPrefix(a, "ok 2 2 ") {
				t.Fatalf("append while the zombie sleeps at %s: %q", step, a)
			}
			if err := zombie.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			z := zombie.line(t)
			if committed && !strings.HasPrefix(z, "ok 2 2 ") || !committed && !(strings.HasPrefix(z, "err ") && strings.Contains(z, "not written")) {
				t.Fatalf("the zombie's append after waking at %s: %q", step, z)
			}
			// Its next append works, with a new producer.
			if a := zombie.do(t, "append "+stream+" any 1"); !strings.HasPrefix(a, "ok ") {
				t.Fatalf("the woken writer's next append: %q", a)
			}
			if got := f.readAll(t, stream); len(got) != 4-btoi(!committed) {
				t.Fatalf("the stream holds %d events", len(got))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSingleWriterStoresForkAStream is the failure the guard prevents: two
// writer processes without it (Config.SingleWriter, as every Store was
// before) both append sequence 1 of a new stream. ReadStream and
// StreamVersion then report the fork, naming the sequence and both event
// IDs, instead of hiding one event.
func TestSingleWriterStoresForkAStream(t *testing.T) {
	f := newWritersFixture(t, 3)
	writers := []*writerProc{f.start(t, envWriterSingle+"=1"), f.start(t, envWriterSingle+"=1")}
	answers := race(t, writers, "append process/fork/1 none 1")
	var ids []string
	for _, a := range answers {
		fields := strings.Fields(a)
		if len(fields) != 4 || fields[0] != "ok" {
			t.Fatalf("unguarded append: %q (each Store checks only what it wrote)", a)
		}
		ids = append(ids, fields[3])
	}
	fresh, err := kafkastore.New(ctxFor(t), kafkastore.Config{Seeds: f.store.Config().Seeds, Topic: f.topic})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	var fork *kafkastore.ForkError
	for _, err := range fresh.ReadStream(ctxFor(t), "process/fork/1", 0) {
		if err != nil && !errors.As(err, &fork) {
			t.Fatalf("ReadStream: %v, want a fork", err)
		}
	}
	if fork == nil || fork.Sequence != 1 || fork.StreamID != "process/fork/1" ||
		!(fork.FirstEventID == ids[0] && fork.OtherEventID == ids[1] || fork.FirstEventID == ids[1] && fork.OtherEventID == ids[0]) {
		t.Fatalf("fork = %+v, want sequence 1 with events %v", fork, ids)
	}
	for _, id := range ids {
		if !strings.Contains(fork.Error(), id) {
			t.Errorf("the error does not name event %s: %v", id, fork)
		}
	}
	if _, err := fresh.StreamVersion(ctxFor(t), "process/fork/1"); !errors.Is(err, kafkastore.ErrForked) || !errors.Is(err, framework.ErrVersionConflict) {
		t.Errorf("StreamVersion: %v, want the fork", err)
	}
}

// TestSingleWriterKilledBeforeItsCatalogWrite: the only writer of a topic
// (Config.SingleWriter) is SIGKILLed after its append's events were
// acknowledged and before its catalog entry was written. The catalog then
// says the stream is one event shorter than it is. The writer's next
// process must not take the catalog's word: an append expecting the old
// head is a conflict naming the real one, and the stream is not forked.
func TestSingleWriterKilledBeforeItsCatalogWrite(t *testing.T) {
	f := newWritersFixture(t, 3)
	const stream = "process/single/killed"
	first := f.start(t, envWriterSingle+"=1")
	if a := first.do(t, "append "+stream+" none 2"); !strings.HasPrefix(a, "ok 1 2 ") {
		t.Fatalf("first append: %q", a)
	}
	_ = first.in.Close()
	_ = first.cmd.Wait()
	doomed := f.start(t, envWriterSingle+"=1", envWriterStep+"=produced", envWriterAt+"=kill")
	doomed.send(t, "append "+stream+" 2 1")
	if err := doomed.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the writer was not killed between its events and its catalog entry: %v", err)
	}
	next := f.start(t, envWriterSingle+"=1")
	if a := next.do(t, "append "+stream+" 2 1"); a != "conflict 3" {
		t.Fatalf("append at version 2 after the kill: %q, want conflict 3 (the killed append's event is in the stream)", a)
	}
	if a := next.do(t, "append "+stream+" 3 1"); !strings.HasPrefix(a, "ok 4 4 ") {
		t.Fatalf("append at version 3: %q", a)
	}
	if got := f.readAll(t, stream); len(got) != 4 {
		t.Fatalf("the stream holds %d events, want 4", len(got))
	}
}

// BenchmarkWriterProcesses measures appends of writer processes, one event
// per append, 8 concurrent appends per process: ns/op is wall time per
// append over all processes. Compare in one run (benchstat):
//
//   - guarded/1 and guarded/2: one and two processes appending to
//     distinct streams; the rate of two over the rate of one;
//
//   - single/1: one process without a guard (Config.SingleWriter), the
//     store before the guard: the cost of the guard;
//
//   - contended/2: two processes appending to one stream (AnyVersion);
//
//   - existing/1 and existing-single/1: appends to 64 streams created
//     before the timer, guarded and not: the cost without creating streams.
//
//     go test -run '^$' -bench WriterProcesses -benchtime 2000x -count 6 ./kafkastore
func BenchmarkWriterProcesses(b *testing.B) {
	for _, c := range []struct {
		name    string
		writers int
		env     []string
		same    bool
	}{
		{"guarded/1", 1, nil, false},
		{"guarded/2", 2, nil, false},
		{"single/1", 1, []string{envWriterSingle + "=1"}, false},
		{"contended/2", 2, nil, true},
		{"existing/1", 1, nil, false},
		{"existing-single/1", 1, []string{envWriterSingle + "=1"}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := newWritersFixture(b, 6)
			writers := make([]*writerProc, c.writers)
			for i := range writers {
				writers[i] = startWriter(b, f.topic, f.ns, c.env...)
			}
			per := (b.N + c.writers - 1) / c.writers
			if strings.HasPrefix(c.name, "existing") {
				// 64 streams per writer, created before the timer.
				for i, w := range writers {
					if a := w.do(b, fmt.Sprintf("bulk process/bench/%d 64 8 distinct", i)); !strings.HasPrefix(a, "done 64 0") {
						b.Fatalf("writer: %q", a)
					}
				}
			}
			b.ResetTimer()
			for i, w := range writers {
				mode, prefix := "distinct", fmt.Sprintf("process/bench/%d", i)
				if c.same {
					mode, prefix = "same", "process/bench/one"
				}
				if strings.HasPrefix(c.name, "existing") {
					mode = "sixtyfour"
				}
				fmt.Fprintf(w.in, "bulk %s %d 8 %s\n", prefix, per, mode)
			}
			for _, w := range writers {
				if !w.out.Scan() || !strings.HasPrefix(w.out.Text(), fmt.Sprintf("done %d 0", per)) {
					b.Fatalf("writer: %q", w.out.Text())
				}
			}
		})
	}
}

// TestWriterProcessesThroughBrokerRestarts: two writer processes append to
// ten shared streams on the 3-broker cluster of scripts/ha.sh while its
// brokers are killed and restarted one after the other (each the leader of
// some partitions). Every stream ends contiguous and without a fork, and
// holds every acknowledged append (and at most the appends whose outcome
// was unknown).
func TestWriterProcessesThroughBrokerRestarts(t *testing.T) {
	seeds, ctl := os.Getenv("PROJECTOR_HA_KAFKA_SEEDS"), os.Getenv("PROJECTOR_HA_CTL")
	if seeds == "" || ctl == "" {
		if os.Getenv("PROJECTOR_NO_HA") == "1" && !strings.EqualFold(os.Getenv("CI"), "true") {
			t.Skip("PROJECTOR_NO_HA=1: the 3-broker cluster was not started")
		}
		if testenv.RequireReal() {
			t.Fatal("needs scripts/ha.sh's 3-broker cluster (PROJECTOR_HA_KAFKA_SEEDS unset; scripts/test.sh starts it unless PROJECTOR_NO_HA=1)")
		}
		t.Skip("needs scripts/ha.sh's 3-broker cluster: scripts/ha.sh up, then eval its export lines")
	}
	rds := testenv.Redis(t)
	if rds.Kind != testenv.KindEnv {
		if testenv.RequireReal() {
			t.Fatal("writer processes need Redis given by environment (scripts/test.sh)")
		}
		t.Skip("writer processes need Redis given by environment")
	}
	topic := testenv.Kafka(t).TopicName(t, "events")
	s, err := kafkastore.New(ctxFor(t), kafkastore.Config{Seeds: strings.Split(seeds, ","), Topic: topic, Partitions: 3, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := "writers-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	writers := []*writerProc{
		startWriter(t, topic, ns, envWriterSeeds+"="+seeds, envWriterLease+"=3s"),
		startWriter(t, topic, ns, envWriterSeeds+"="+seeds, envWriterLease+"=3s"),
	}
	const per = 800
	for i, w := range writers {
		w.send(t, fmt.Sprintf("bulk process/restart %d %d ten", per, 2+2*i))
	}
	ha := func(args ...string) {
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", ctl, args, err, out)
		}
	}
	for _, broker := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		time.Sleep(2 * time.Second)
		ha("kill", broker)
		time.Sleep(4 * time.Second)
		ha("start", broker)
	}
	ok, maybe := 0, 0
	for _, w := range writers {
		var n, failed, uncertain int
		if _, err := fmt.Sscanf(w.line(t), "done %d %d %d", &n, &failed, &uncertain); err != nil {
			t.Fatal(err)
		}
		t.Logf("writer %d: %d appended, %d failed (%d of them maybe written)", w.cmd.Process.Pid, n, failed, uncertain)
		ok, maybe = ok+n, maybe+uncertain
	}
	if ok < per { // most appends must get through the restarts
		t.Errorf("only %d of %d appends succeeded", ok, 2*per)
	}
	f := &writersFixture{topic: topic, ns: ns, store: s}
	total := 0
	for i := range 10 {
		total += len(f.readAll(t, fmt.Sprintf("process/restart/%d", i)))
	}
	if total < ok || total > ok+maybe {
		t.Errorf("the streams hold %d events; %d appends were acknowledged, %d more may have been written", total, ok, maybe)
	}
}
