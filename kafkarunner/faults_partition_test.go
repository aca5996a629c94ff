package kafkarunner_test

// Faults around one partition, against the real broker and Redis: an
// oversized poison record, an unreachable dead-letter topic, a hung
// projection, a revoke during a retry backoff, conflicts far behind a
// stream's head, a zombie replica process.

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// privateRedis starts a Redis server of the test's own and a fixture whose
// fast is the runner configuration of these tests: quick flushes, checks
// waitCommitted waits until the group's committed offsets reach the end of
// TestRedisFlushedWhileRunning: FLUSHALL on the Redis of a running replica
// whose offsets are committed. Every partition stops as state-lost (the busy
// one at its next write, the idle one at its next check), readiness names
// them, nothing is parked as a gap and nothing is applied on top of the
// TestRedisRestartedWithoutPersistence: the replicas stop, Redis restarts
// without persistence (empty), a replica starts: every partition whose
// offsets are committed is found state-lost at assignment, with the
// TestRedisRestoredFromAnOlderSnapshot: Redis comes back with an older
// state than the replica wrote (SAVE, more writes, restart from the
// TestServerChecks: a Redis that may evict keys is refused at start; one
// TestFenceRefusedAtAssignment: the partitions are assigned, but Redis
// refuses the fence (a real NOPERM from a real server: the replica's ACL
// user may read the control state but not run scripts). Readiness names
// every partition and the error, lag covers them; once the permission is
// TestFencesDeletedWhileRunning: the fences hash disappears (a fence can go
// back in time only if Redis lost it). The next write is refused as lost
// state, the worker starts a new session, finds the committed offsets
// TestFenceTakenOutOfBand: another holder takes a partition's fence while
// the group still gives the partition to this replica. The replica writes
// nothing with its stale fence, reports the partition fenced (not ready),
// TestPoisonRecordTooLargeForTheDeadLetterTopic: a poison record close to
// the broker's size limit whose copy the dead-letter topic refuses
// (MESSAGE_TOO_LARGE). Its stream is parked all the same, with a reference
// dead letter; every other stream of every partition flows, and a replica
// that joins gets partitions (rebalances work).
func TestPoisonRecordTooLargeForTheDeadLetterTopic(t *testing.T) {
	for _, tc := range []struct {
		name         string
		smallDLQ     bool
		deadLetter   string
		wantDLQValue bool
	}{
		{"dead-letter topic created by the runner", false, controlplane.DeadLetterCopied, true},
		{"dead-letter topic too small for a copy", true, controlplane.DeadLetterReference, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 3)
			dlq := f.store.Config().Topic + ".dead-letter"
			if tc.smallDLQ {
				resp, err := f.env.Admin(t).CreateTopic(ctxFor(t), 3, 1, map[string]*string{"max.message.bytes": ptr("100000")}, dlq)
				if err == nil {
					err = resp.Err
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			poisoned := "process/big/poison"
			big := make([]byte, 900_000) // random: the producer compresses
			_, _ = rand.Read(big)
			if _, err := f.store.Append(ctxFor(t), poisoned, framework.NoStream, []framework.EventData{{Type: "Poison", Data: big}}); err != nil {
				t.Fatal(err)
			}
			// Plenty behind it in every partition: more than the old
			// hand-off's two batches.
			want := f.produce(t, 100, 10, "process/t/")
			p := f.counter(t)
			rep := f.start(t, p, func(c *kafkarunner.Config) { fast(c); c.BatchSize = 20 })
			f.waitCounts(t, p, want, 2*time.Minute)
			parked := waitParked(t, rep, 1)
			if parked[0].StreamID != poisoned || parked[0].DeadLetter != tc.deadLetter {
				t.Errorf("parked %+v, want %s with dead letter %q", parked[0], poisoned, tc.deadLetter)
			}
			rec := pollOne(t, f.env.Client(t, consumeFromStart(dlq)...))
			if string(rec.Key) != poisoned || (len(rec.Value) > 0) != tc.wantDLQValue {
				t.Errorf("dead letter %s with %d bytes, want a copy: %v", rec.Key, len(rec.Value), tc.wantDLQValue)
			}
			if !tc.wantDLQValue && !strings.Contains(headerOf(rec, kafkarunner.HeaderDLQReference), "MESSAGE_TOO_LARGE") {
				t.Errorf("reference header %q does not say why the copy failed", headerOf(rec, kafkarunner.HeaderDLQReference))
			}
			second := f.start(t, p, fast)
			waitFor(t, time.Minute, "the joining replica gets partitions", func() (bool, string) {
				return len(second.r.Assigned()) > 0 && len(rep.r.Assigned()) > 0, fmt.Sprint(rep.r.Assigned(), second.r.Assigned())
			})
		})
	}
}

// TestHungProjectionStopsOnlyItsPartition: the projection hangs on one
// stream's event (ignoring its context). The other partitions flow, the
// hung partition's fetching pauses instead of blocking the poll loop, and a
// replica that joins gets partitions: the rebalance cancels the hung
// partition's writes after RevokeTimeout instead of waiting forever.
func TestHungProjectionStopsOnlyItsPartition(t *testing.T) {
	f := newFixture(t, 3)
	hung := "process/hung/0"
	p, hangs, release := hungCounter(t, f, hung)
	defer release() // before the replicas stop: Run waits for the hung goroutine
	hungPartition := f.partitionOf(t, hung)
	want := f.produce(t, 100, 10, "process/t/")
	rep := f.start(t, p, func(c *kafkarunner.Config) { fast(c); c.BatchSize = 20 })
	waitFor(t, time.Minute, "the projection hangs", func() (bool, string) { return hangs.Load() > 0, "" })
	others := map[string]int64{}
	for id, n := range want {
		if f.partitionOf(t, id) != hungPartition {
			others[id] = n
		}
	}
	waitFor(t, 2*time.Minute, "the other partitions' streams applied", func() (bool, string) {
		got := f.counts(t, p)
		for id, n := range others {
			if got[id] != n {
				return false, fmt.Sprintf("%s at %d of %d", id, got[id], n)
			}
		}
		return true, ""
	})
	start := time.Now()
	second := f.start(t, p, fast)
	waitFor(t, time.Minute, "the joining replica gets partitions", func() (bool, string) {
		return len(second.r.Assigned()) > 0, fmt.Sprint(rep.r.Assigned(), second.r.Assigned())
	})
	t.Logf("rebalance with a hung partition took %v", time.Since(start).Round(time.Millisecond))
}

// partitionOf returns the partition the store put a stream in.
func (f *fixture) partitionOf(t *testing.T, stream string) int32 {
	t.Helper()
	e, ok, err := f.store.Entry(ctxFor(t), stream)
	if err != nil || !ok {
		t.Fatalf("catalog entry of %s: %v, %v", stream, ok, err)
	}
	return e.Partition
}

// hungCounter is f.counter, except that it hangs on the second event of
// stream hung (appended here, with the first) until release is called,
// ignoring its context. hangs counts the workers that reached it.
func hungCounter(t *testing.T, f *fixture, hung string) (p *redischeckpoint.AtomicProjection, hangs *atomic.Int64, release func()) {
	t.Helper()
	ch := make(chan struct{})
	hangs = new(atomic.Int64)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.StreamID == hung && e.Sequence == 2 {
			hangs.Add(1)
			<-ch
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(ctxFor(t), hung, framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	return p, hangs, sync.OnceFunc(func() { close(ch) })
}

// plainCounter counts events per stream in Redis with plain HINCRBYs: not
// atomic with its cursors, which the runner stores when it flushes. Events
// of type "Poison" fail.
type plainCounter struct {
	name string
	rdb  redis.UniversalClient
	key  string
}

func (c *plainCounter) Name() string { return c.name }
func (c *plainCounter) Apply(ctx context.Context, e framework.Event) error {
	if e.Type == "Poison" {
		return fmt.Errorf("cannot apply %s: poison", e)
	}
	return c.rdb.HIncrBy(ctx, c.key, e.StreamID, 1).Err()
}

// TestRevokeDuringRetryBackoff: a replica waits in a retry backoff on a
// poison event of each partition when a second replica joins and a
// partition is revoked. The revoked partition stores its cursors and
// commits up to the poison event, so the new owner starts there: with a
// projection that is not atomic with its cursors, nothing is applied twice.
func TestRevokeDuringRetryBackoff(t *testing.T) {
	f := newFixture(t, 2)
	pc := &plainCounter{name: f.name, rdb: f.rdb, key: f.ns + ":plain-counts"}
	want := f.produce(t, 10, 3, "process/t/")
	poisoned := map[int32]bool{}
	for id := range want {
		if part := f.partitionOf(t, id); !poisoned[part] {
			poisoned[part] = true
			if _, err := f.store.Append(ctxFor(t), id, framework.AnyVersion, []framework.EventData{{Type: "Poison"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(poisoned) != 2 {
		t.Fatalf("poison events in partitions %v, want both", poisoned)
	}
	counts := func() map[string]int64 {
		raw, _ := f.rdb.HGetAll(ctxFor(t), pc.key).Result()
		out := map[string]int64{}
		for k, v := range raw {
			var n int64
			fmt.Sscan(v, &n)
			out[k] = n
		}
		return out
	}
	slow := func(c *kafkarunner.Config) {
		fast(c)
		c.FlushInterval = time.Hour // no flush but the one the revoke makes
		c.Retry = kafkarunner.RetryPolicy{Attempts: 3, Initial: 30 * time.Second}
	}
	a := f.start(t, pc, slow)
	waitFor(t, time.Minute, "every good event applied once", func() (bool, string) {
		got := counts()
		return maps.Equal(got, want), fmt.Sprint(got)
	})
	time.Sleep(500 * time.Millisecond) // both workers are in their first backoff now
	b := f.start(t, pc, slow)
	waitFor(t, time.Minute, "a partition moved to the joining replica", func() (bool, string) {
		return len(b.r.Assigned()) == 1 && len(a.r.Assigned()) == 1, fmt.Sprint(a.r.Assigned(), b.r.Assigned())
	})
	time.Sleep(3 * time.Second) // the new owner reads from the committed offset
	if got := counts(); !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v: the new owner re-applied events the revoked one had applied", got, want)
	}
	if st := b.r.Stats(); st.Skipped != 0 || st.Applied != 0 {
		t.Errorf("the new owner skipped %d and applied %d events; it should have started at the poison event", st.Skipped, st.Applied)
	}
}

// TestConflictFarBehindTheHead: a second writer repeats a sequence long
// applied (far beyond the in-memory window), live and after a restart; a
// producer that wrote the head event twice is a harmless duplicate; and a
// duplicate that cannot be verified is counted, never silent.
func TestConflictFarBehindTheHead(t *testing.T) {
	f := newFixture(t, 1)
	want := f.produce(t, 3, 20, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)

	// Live: sequence 5 of a stream at 20, with another event ID.
	rawEvent(t, f, "process/t/00000", 5, "forked-5")
	parked := waitParked(t, rep, 1)
	if parked[0].StreamID != "process/t/00000" || parked[0].Reason != controlplane.ParkConflict || parked[0].Sequence != 5 {
		t.Errorf("parked %+v, want a conflict at 5", parked[0])
	}
	// The head event written again by its producer: skipped, verified.
	head := lastEvent(t, f, "process/t/00001")
	rawEvent(t, f, "process/t/00001", 20, head.EventID)
	time.Sleep(time.Second)
	if parked, _ := rep.r.Parked(ctxFor(t)); len(parked) != 1 {
		t.Errorf("parked %+v: a repeated head event is not a conflict", parked)
	}
	rep.stop(t)

	// After a restart: the new replica knows only what Redis stored.
	rawEvent(t, f, "process/t/00002", 3, "forked-3")
	again := f.start(t, f.counter(t), fast)
	parked = waitParked(t, again, 2)
	found := false
	for _, ps := range parked {
		found = found || (ps.StreamID == "process/t/00002" && ps.Reason == controlplane.ParkConflict && ps.Sequence == 3)
	}
	if !found {
		t.Errorf("parked %+v, want a conflict of process/t/00002 at 3 after the restart", parked)
	}
	again.stop(t)

	// Without the stored heads (state of an older version) a duplicate
	// cannot be verified: skipped and counted.
	if err := f.rdb.Del(ctxFor(t), f.ns+":{"+f.name+"}:event-ids").Err(); err != nil {
		t.Fatal(err)
	}
	rawEvent(t, f, "process/t/00001", 7, "maybe-7")
	third := f.start(t, f.counter(t), fast)
	waitFor(t, 30*time.Second, "the unverified duplicate counted", func() (bool, string) {
		st := third.r.Stats()
		return st.Unverified == 1, fmt.Sprintf("%+v", st)
	})
	want["process/t/00000"] = 20
	f.waitCounts(t, p, want, 5*time.Second) // nothing applied twice
}

// lastEvent reads the last event of a stream.
func lastEvent(t *testing.T, f *fixture, stream string) framework.Event {
	t.Helper()
	var last framework.Event
	for e, err := range f.store.ReadStream(ctxFor(t), stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		last = e
	}
	return last
}

// TestZombieCannotPark: a replica process is frozen (SIGSTOP) while it
// applies a poison event, past its session timeout, so the group gives its
// partition to another replica, which applies that event and more. The
// frozen replica wakes up (SIGCONT) still believing it owns the partition,
// fails the event and tries to park its stream: the park is fenced, so no
// stream is parked, no dead letter is written and the read model is exact.
//
// Its Kafka traffic goes through a proxy that holds every byte from the
// freeze until the zombie tried its write: otherwise the group's "you are
// out" (already waiting in its socket) could reach it first, and the test
// would show nothing.
func TestZombieCannotPark(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	want := f.produce(t, 5, 2, "process/t/")
	latch := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "zombie.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	proxy := testenv.StartProxy(t, f.env.Seeds[0])
	zombie := startReplicaProcess(t, f, logFile, envSession+"=6s", envLatch+"="+latch, envKafkaProxy+"="+proxy.Addr)
	t.Cleanup(func() {
		_ = zombie.Process.Signal(syscall.SIGCONT)
		_ = zombie.Process.Signal(syscall.SIGTERM)
		_, _ = zombie.Process.Wait()
	})
	p := f.counter(t) // reads the read model
	f.waitCounts(t, p, want, time.Minute)

	// The zombie-to-be blocks inside the poison event's apply.
	if _, err := f.store.Append(ctxFor(t), "process/t/00000", framework.AnyVersion, []framework.EventData{{Type: "Poison"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the replica process applies the poison event", func() (bool, string) {
		_, err := os.Stat(filepath.Join(latch, "blocked"))
		return err == nil, fmt.Sprint(err)
	})
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	proxy.Freeze()

	// Another replica, whose projection applies "Poison" events, takes
	// the partition once the frozen one's session expired.
	countAll, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	owner := f.start(t, countAll, fast)
	waitFor(t, time.Minute, "the partition moves to the live replica", func() (bool, string) {
		return len(owner.r.Assigned()) == 1, fmt.Sprint(owner.r.Assigned())
	})
	want["process/t/00000"]++
	for id, n := range f.produce(t, 5, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)

	// The zombie wakes up: its apply fails and it parks the stream.
	if err := os.WriteFile(filepath.Join(latch, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the zombie's park refused", func() (bool, string) {
		log, _ := os.ReadFile(logPath)
		return strings.Contains(string(log), "fenced"), "its log says nothing about fencing:\n" + string(log)
	})
	proxy.Thaw()
	time.Sleep(2 * time.Second) // the live replica refreshes its parked streams meanwhile
	if parked, _ := owner.r.Parked(ctxFor(t)); len(parked) != 0 {
		t.Errorf("the zombie parked %+v", parked)
	}
	cl := f.env.Client(t, consumeFromStart(f.store.Config().Topic+".dead-letter")...)
	ctx, cancel := context.WithTimeout(ctxFor(t), 3*time.Second)
	defer cancel()
	if recs := cl.PollFetches(ctx).Records(); len(recs) > 0 {
		t.Errorf("the zombie wrote %d dead letters (first: %s)", len(recs), recs[0].Key)
	}
	for id, n := range f.produce(t, 5, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)
}

// TestDeadLetterTopicUnreachable: the dead-letter topic is gone (deleted
// while the replica runs; the broker does not create topics on use). A
// poison event's stream is parked all the same, with its dead letter
// pending; the partition keeps flowing; once the topic is back, the worker
// writes the dead letter as a reference and records it.
func TestDeadLetterTopicUnreachable(t *testing.T) {
	defer kafkarunner.SetDeadLetterPause(time.Second)()
	f := newFixture(t, 2)
	want := f.produce(t, 10, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	dlq := f.store.Config().Topic + ".dead-letter"
	adm := f.env.Admin(t)
	if _, err := adm.DeleteTopics(ctxFor(t), dlq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the dead-letter topic deleted", func() (bool, string) {
		td, err := adm.ListTopics(ctxFor(t), dlq)
		return err == nil && !td.Has(dlq), fmt.Sprint(err)
	})

	poisoned := "process/t/00004"
	if _, err := f.store.Append(ctxFor(t), poisoned, framework.AnyVersion, []framework.EventData{{Type: "Poison"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	for id, n := range f.produce(t, 10, 1, "process/t/") {
		if id != poisoned {
			want[id] += n
		}
	}
	f.waitCounts(t, p, want, 2*time.Minute)
	parked := waitParked(t, rep, 1)
	if parked[0].StreamID != poisoned || parked[0].DeadLetter != controlplane.DeadLetterPending || parked[0].DeadLetterError == "" {
		t.Fatalf("parked %+v, want %s with its dead letter pending and why", parked[0], poisoned)
	}

	if resp, err := adm.CreateTopic(ctxFor(t), 2, 1, nil, dlq); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	waitFor(t, time.Minute, "the dead letter written as a reference", func() (bool, string) {
		parked, err := rep.r.Parked(ctxFor(t))
		return err == nil && len(parked) == 1 && parked[0].DeadLetter == controlplane.DeadLetterReference, fmt.Sprintf("%+v %v", parked, err)
	})
	rec := pollOne(t, f.env.Client(t, consumeFromStart(dlq)...))
	if string(rec.Key) != poisoned || len(rec.Value) != 0 || headerOf(rec, kafkarunner.HeaderDLQReference) == "" ||
		!strings.HasPrefix(headerOf(rec, kafkarunner.HeaderDLQSource), f.store.Config().Topic+"/") {
		t.Errorf("dead letter %s, %d bytes, headers %v; want a reference to the parked event", rec.Key, len(rec.Value), rec.Headers)
	}
}

// partialOnce is a projection whose store applies part of one event and
// says so (framework.ErrPartialApply), as redischeckpoint does when a write
// its checks let through fails half way.
type partialOnce struct {
	plainCounter
	attempts atomic.Int64
}

func (p *partialOnce) Apply(ctx context.Context, e framework.Event) error {
	if e.Type == "Partial" {
		p.attempts.Add(1)
		return fmt.Errorf("write 2 of %s: %w", e, framework.ErrPartialApply)
	}
	return p.plainCounter.Apply(ctx, e)
}

// TestPartialApplyIsParkedWithoutRetry: an event the store applied in part
// is never applied again: its stream is parked at once (no retries) with a
// reason that says a replay is needed, a retry of it is refused, and every
// other stream flows.
func TestPartialApplyIsParkedWithoutRetry(t *testing.T) {
	f := newFixture(t, 2)
	p := &partialOnce{plainCounter: plainCounter{name: f.name, rdb: f.rdb, key: f.ns + ":plain-counts"}}
	want := f.produce(t, 10, 2, "process/t/")
	if _, err := f.store.Append(ctxFor(t), "process/t/00003", framework.AnyVersion, []framework.EventData{{Type: "Partial"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	for id, n := range f.produce(t, 10, 1, "process/t/") {
		if id != "process/t/00003" {
			want[id] += n
		}
	}
	rep := f.start(t, p, fast)
	parked := waitParked(t, rep, 1)
	if parked[0].StreamID != "process/t/00003" || parked[0].Reason != controlplane.ParkPartialApply || parked[0].Sequence != 3 ||
		!strings.Contains(parked[0].Error, "replay the projection") {
		t.Errorf("parked %+v", parked[0])
	}
	if n := p.attempts.Load(); n != 1 {
		t.Errorf("the partly applied event was applied %d times, want once", n)
	}
	waitFor(t, time.Minute, "the other streams applied", func() (bool, string) {
		raw, _ := f.rdb.HGetAll(ctxFor(t), p.key).Result()
		for id, n := range want {
			if raw[id] != fmt.Sprint(n) {
				return false, fmt.Sprintf("%s at %s of %d", id, raw[id], n)
			}
		}
		return true, ""
	})
	if err := rep.r.RetryParked(ctxFor(t), "process/t/00003", "test", "try again"); err == nil || !strings.Contains(err.Error(), "replay") {
		t.Errorf("retry of a partly applied event = %v, want refused", err)
	}
}

// TestResumeDuringABacklog: a parked stream is retried while its partition
// works through a long backlog (the inbox never empties). It is caught up
// within ParkedRefresh, not only once the backlog is gone.
func TestResumeDuringABacklog(t *testing.T) {
	f := newFixture(t, 1)
	var fixed atomic.Bool
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && !fixed.Load() {
			return fmt.Errorf("cannot apply %s: poison", e)
		}
		time.Sleep(200 * time.Microsecond) // a backlog that lasts seconds
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	parked := "process/p/0"
	if _, err := f.store.Append(ctxFor(t), parked, framework.NoStream, []framework.EventData{{Type: "Poison"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	want := f.produce(t, 200, 40, "process/t/")
	rep := f.start(t, p, func(c *kafkarunner.Config) { fast(c); c.BatchSize = 20 })
	waitParked(t, rep, 1)
	fixed.Store(true)
	if err := rep.r.RetryParked(ctxFor(t), parked, "test", "fixed"); err != nil {
		t.Fatal(err)
	}
	var behind int64
	waitFor(t, time.Minute, "the parked stream caught up", func() (bool, string) {
		got := f.counts(t, p)[parked]
		for _, l := range rep.r.Lag() {
			behind = l.Records
		}
		return got == 2, fmt.Sprintf("%d of 2", got)
	})
	if behind == 0 {
		t.Errorf("the backlog was gone before the stream caught up: the test shows nothing")
	}
	want[parked] = 2
	f.waitCounts(t, p, want, 2*time.Minute)
}
