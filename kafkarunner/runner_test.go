package kafkarunner_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// fixture is a topic, a Redis namespace and a counting projection whose
// read model (a count per stream) lives in Redis beside its cursors.
type fixture struct {
	env    *testenv.KafkaEnv
	redis  *testenv.RedisEnv
	rdb    redis.UniversalClient // the Redis the read model lives in
	store  *kafkastore.Store
	rstore *redischeckpoint.Store
	ns     string // the Redis namespace
	name   string
}

// uniqueName returns prefix with a random suffix, a valid projection name.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func newFixture(t *testing.T, partitions int32) *fixture {
	t.Helper()
	red := testenv.Redis(t)
	return newFixtureOn(t, partitions, red, red.Client, red.Prefix(t))
}

// newFixtureOn is newFixture with the read model in the given Redis (a
// server of the test's own, for faults) under namespace ns.
func newFixtureOn(t *testing.T, partitions int32, red *testenv.RedisEnv, rdb redis.UniversalClient, ns string) *fixture {
	t.Helper()
	store, env := newStore(t, kafkastore.Config{Partitions: partitions})
	rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: rdb, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	// A consumer group is cluster-wide: a name of its own per test, so that
	// tests (and packages tested in parallel) never share a group.
	return &fixture{env: env, redis: red, rdb: rdb, store: store, rstore: rstore, ns: ns, name: uniqueName("counts")}
}

// counter returns the counting projection; events of type "Poison" fail.
func (f *fixture) counter(t *testing.T) *redischeckpoint.AtomicProjection {
	t.Helper()
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" {
			return fmt.Errorf("cannot apply %s: poison", e)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// produce appends n events to each of the streams and returns the counts.
func (f *fixture) produce(t *testing.T, streams, n int, prefix string) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	data := make([]framework.EventData, n)
	for i := range data {
		data[i] = framework.EventData{Type: "Counted"}
	}
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	sem := make(chan struct{}, 16)
	for i := range streams {
		id := fmt.Sprintf("%s%05d", prefix, i)
		want[id] = int64(n)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := f.store.Append(ctx, id, framework.AnyVersion, data); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return want
}

func (f *fixture) counts(t *testing.T, p *redischeckpoint.AtomicProjection) map[string]int64 {
	t.Helper()
	raw, err := f.rdb.HGetAll(context.Background(), p.Key("counts")).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for k, v := range raw {
		var n int64
		fmt.Sscan(v, &n)
		out[k] = n
	}
	return out
}

// waitCounts waits until the read model equals want, or fails showing the
// difference.
func (f *fixture) waitCounts(t *testing.T, p *redischeckpoint.AtomicProjection, want map[string]int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := f.counts(t, p)
		if maps.Equal(got, want) {
			return
		}
		for id, n := range got {
			if n > want[id] {
				t.Fatalf("stream %s counted %d times, produced %d: an event was applied twice", id, n, want[id])
			}
		}
		if time.Now().After(deadline) {
			missing := 0
			for id, n := range want {
				if got[id] != n {
					missing++
				}
			}
			t.Fatalf("after %v, %d of %d streams differ from what was produced", timeout, missing, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type replica struct {
	r      *kafkarunner.Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (f *fixture) start(t *testing.T, p framework.Projection, mod func(*kafkarunner.Config)) *replica {
	t.Helper()
	cfg := kafkarunner.Config{
		Seeds: f.env.Seeds, Topic: f.store.Config().Topic, Projection: p, Checkpoints: f.rstore,
		Events: f.store, FlushInterval: 200 * time.Millisecond, ParkedRefresh: 200 * time.Millisecond,
		Retry: kafkarunner.RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond},
	}
	if os.Getenv("PROJECTOR_TEST_RUNNER_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := kafkarunner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rep.done <- r.Run(ctx) }()
	t.Cleanup(func() { rep.stop(t) })
	return rep
}

func (rep *replica) stop(t *testing.T) {
	rep.once.Do(func() {
		rep.cancel()
		select {
		case err := <-rep.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 2)
			t.Errorf("Run did not return within a minute of cancel; goroutines:\n%s", stacks.String())
		}
	})
}

func TestRunnerAppliesEveryEventOnce(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 200, 10, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, nil)
	f.waitCounts(t, p, want, time.Minute)
	if err := rep.r.Ready(ctxFor(t)); err != nil {
		t.Errorf("Ready = %v", err)
	}
	rep.stop(t)

	// The cursors are stored and the offsets committed: a restarted
	// replica re-applies nothing, and applies only what is new.
	more := f.produce(t, 20, 3, "process/t/")
	for id, n := range more {
		want[id] += n
	}
	p2 := f.counter(t)
	f.start(t, p2, nil)
	f.waitCounts(t, p2, want, time.Minute)
	time.Sleep(500 * time.Millisecond)
	if p2.Skipped() != 0 {
		t.Errorf("the restarted replica skipped %d duplicates: offsets were not committed after the cursors", p2.Skipped())
	}
	lag, err := f.env.Admin(t).Lag(ctxFor(t), f.name)
	if err != nil {
		t.Fatal(err)
	}
	if total := lag[f.name].Lag.Total(); total != 0 {
		t.Errorf("committed offsets lag the topic by %d records after a clean stop", total)
	}
}

func TestPoisonEventParksOnlyItsStream(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 50, 4, "process/t/")
	ctx := ctxFor(t)
	poisoned := "process/t/00007"
	if _, err := f.store.Append(ctx, poisoned, framework.AnyVersion, []framework.EventData{{Type: "Poison"}, {Type: "Counted"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	p := f.counter(t)
	rep := f.start(t, p, nil)
	f.waitCounts(t, p, want, time.Minute) // the poisoned stream stops at 4; all others complete

	var parked []controlplane.ParkedStream
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if parked, err = rep.r.Parked(ctx); err != nil || len(parked) > 0 {
			break
		}
	}
	if err != nil || len(parked) != 1 || parked[0].StreamID != poisoned || parked[0].Sequence != 5 || parked[0].Reason != controlplane.ParkApplyFailed {
		t.Fatalf("parked = %+v, %v; want %s at 5", parked, err, poisoned)
	}
	if !strings.Contains(parked[0].Error, "poison") || parked[0].Attempts != 3 {
		t.Errorf("parked record %+v does not carry the error and the 3 attempts", parked[0])
	}
	// The event is on the dead-letter topic with the reason.
	dlq := f.store.Config().Topic + ".dead-letter"
	cl := f.env.Client(t, consumeFromStart(dlq)...)
	rec := pollOne(t, cl)
	if string(rec.Key) != poisoned || headerOf(rec, kafkarunner.HeaderDLQReason) != controlplane.ParkApplyFailed || !strings.Contains(headerOf(rec, kafkarunner.HeaderDLQError), "poison") {
		t.Errorf("dead letter %s with headers %v", rec.Key, rec.Headers)
	}

	// Skipping it (recorded) resumes the stream after the event: its two
	// later events are applied from the event store.
	if err := rep.r.SkipParked(ctx, poisoned, "test", ""); err == nil {
		t.Error("a skip without a reason was accepted")
	}
	if err := rep.r.SkipParked(ctx, poisoned, "test", "known bad event, corrected by ticket 42"); err != nil {
		t.Fatal(err)
	}
	want[poisoned] = 6
	f.waitCounts(t, p, want, 30*time.Second)
	res, err := f.rstore.Resolutions(ctx, f.name, 10)
	if err != nil || len(res) != 1 || res[0].By != "test" || res[0].Action != "skip" || res[0].Parked.Sequence != 5 {
		t.Errorf("resolutions = %+v, %v", res, err)
	}
}

// TestZombieCannotWrite creates a real zombie: a replica process is frozen
// (SIGSTOP) inside the apply of an event, past its session timeout, while
// its Kafka traffic is held by a proxy (so that the group's "you are out"
// cannot reach it first). Another replica takes the partition over, applies
// that event and more. The zombie wakes up (SIGCONT) still believing it
// owns the partition and writes the event with its old fence: the write is
// refused, the read model and the cursors are exact.
func TestZombieCannotWrite(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	dir := t.TempDir()
	want := f.produce(t, 10, 2, "process/t/")
	logPath := filepath.Join(t.TempDir(), "zombie.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	proxy := testenv.StartProxy(t, f.env.Seeds[0])
	zombie := startReplicaProcess(t, f, logFile, envSession+"=6s", envResume+"="+dir, envKafkaProxy+"="+proxy.Addr)
	t.Cleanup(func() {
		_ = zombie.Process.Signal(syscall.SIGCONT)
		_ = zombie.Process.Signal(syscall.SIGTERM)
		_, _ = zombie.Process.Wait()
	})
	p := f.counter(t) // reads the read model; the processes apply
	f.waitCounts(t, p, want, time.Minute)

	// The zombie-to-be blocks inside the apply of a "Latch" event.
	touch(t, dir, "hold")
	produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev("process/t/latch", 1, "l1", "Latch"))
	waitFor(t, 30*time.Second, "the replica process applies the latch event", func() (bool, string) {
		return exists(filepath.Join(dir, "blocked")), "not blocked"
	})
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	proxy.Freeze()
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil { // the next owner does not block
		t.Fatal(err)
	}

	// Another replica takes the partition once the zombie's session
	// expired, and applies the latch event and more.
	owner := f.start(t, p, fast)
	waitFor(t, time.Minute, "the partition moves to the live replica", func() (bool, string) {
		return len(owner.r.Assigned()) == 1, fmt.Sprint(owner.r.Assigned())
	})
	want["process/t/latch"] = 1
	for id, n := range f.produce(t, 10, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)

	// The zombie wakes up inside its apply and writes with its old fence.
	touch(t, dir, "release")
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the zombie's write refused", func() (bool, string) {
		log, _ := os.ReadFile(logPath)
		return strings.Contains(string(log), "fenced"), "its log says nothing about fencing:\n" + string(log)
	})
	proxy.Thaw()
	time.Sleep(2 * time.Second)
	f.waitCounts(t, p, want, 10*time.Second)
	cp, err := f.rstore.Load(ctxFor(t), f.name)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range want {
		if got := cp.Cursor(id); got != uint64(n) {
			t.Errorf("cursor of %s = %d, want %d", id, got, n)
		}
	}
	// The partition keeps working with its live owner.
	for id, n := range f.produce(t, 10, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)
}
