package kafkarunner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Regression tests from an adversarial review of the resume (each failed
// on the first version of it): interleavings of parks, applies, crashes,
// Redis errors, requests and transactions.

// latched wraps a projection: an event of type "Latch" blocks while
// hold is set, until the context ends (then it fails, nothing applied).
type latched struct {
	p    framework.Projection
	hold *atomic.Bool
	in   chan struct{}
}

func (l *latched) Name() string { return l.p.Name() }
func (l *latched) Apply(ctx context.Context, e framework.Event) error {
	if e.Type == "Latch" && l.hold.Load() {
		select {
		case l.in <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return l.p.Apply(ctx, e)
}

// TestCrashBetweenParkAndApply: a batch holds X@1, X@2 and then a
// malformed record of X. The worker applies X's earlier events before it
// parks X, so a crash while X@2 applies leaves nothing parked; and a park
// holds only the records from its own offset on. After the restart X@2 is
// applied, X parks at the malformed record, and the retry applies the rest.
func TestCrashBetweenParkAndApply(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/review/crash"
	produceRaw(t, cl, topic,
		ev(id, 1, "c1", ""), ev(id, 2, "c2", "Latch"),
		rawRec{stream: id, seq: "bad", id: "bad", typ: "Counted"},
		ev(id, 3, "c3", ""), ev(id, 4, "c4", ""))
	p, _ := f.fixableCounter(t)
	var hold atomic.Bool
	hold.Store(true)
	l := &latched{p: p, hold: &hold, in: make(chan struct{}, 1)}
	rep := f.start(t, l, nil)
	<-l.in // X@2 is being applied
	if parked := parkedByID(t, rep); len(parked) != 0 {
		t.Fatalf("parked %+v before the stream's earlier events were applied", parked)
	}
	rep.r.Crash()
	rep.stop(t)
	if got := f.counts(t, p)[id]; got != 1 {
		t.Fatalf("count %d after crash, want 1", got)
	}
	hold.Store(false)
	rep = f.start(t, l, nil)
	waitParked(t, rep, 1)
	if err := rep.r.RetryParked(ctx, id, "test", "malformed record is in the DLQ"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	parked := parkedByID(t, rep)
	t.Logf("after retry: count=%d parked=%+v", f.counts(t, p)[id], parked[id])
	if pk, ok := parked[id]; ok {
		// The stream stalls: the resume never re-reads X@2 (before the
		// parked offset). Accept the skip the resolver approves:
		if err := rep.r.SkipParked(ctx, id, "test", "accept the missing events"); err != nil {
			t.Logf("skip refused: %v", err)
		} else {
			t.Logf("skip of %s at %d (%s) approved", id, pk.Sequence, pk.Reason)
		}
		time.Sleep(3 * time.Second)
	}
	got := f.counts(t, p)[id]
	if got != 4 {
		t.Fatalf("LOSS/STALL: %s counted %d events, want 4 (X@2 was never applied); parked now: %+v", id, got, parkedByID(t, rep))
	}
}

// TestMalformedOffHomeIsMisplaced: a malformed record keyed by a valid
// stream ID on a partition other than the stream's home is misplaced: it
// parks a pseudo-stream of its own and the stream goes on at home.
func TestMalformedOffHomeIsMisplaced(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/review/offhome"
	home := kafkastore.PartitionFor(id, 3)
	produceRaw(t, cl, topic, ev(id, 1, "o1", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	f.waitCounts(t, p, map[string]int64{id: 1}, time.Minute)
	manual := f.env.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	bad := &kgo.Record{Topic: topic, Partition: (home + 1) % 3, Key: []byte(id), Value: []byte("not an event")}
	if err := manual.ProduceSync(ctx, bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	parked := waitParked(t, rep, 1)
	pseudo := fmt.Sprintf("misplaced/%d/%s", (home+1)%3, id)
	if parked[0].StreamID != pseudo || parked[0].Reason != controlplane.ParkMisplaced || !strings.Contains(parked[0].Error, "does not decode") {
		t.Fatalf("parked %+v; want %s, misplaced", parked[0], pseudo)
	}
	produceRaw(t, cl, topic, ev(id, 2, "o2", ""), ev(id, 3, "o3", ""))
	want := map[string]int64{id: 3}
	f.waitCounts(t, p, want, 30*time.Second)
	if err := rep.r.RetryParked(ctx, pseudo, "test", "again"); err == nil || !strings.Contains(err.Error(), "can never apply") {
		t.Fatalf("retry of a misplaced record: %v", err)
	}
	if err := rep.r.SkipParked(ctx, pseudo, "test", "not an event; its copy is in the DLQ"); err != nil {
		t.Fatal(err)
	}
	waitUnparked(t, rep, pseudo)
	f.settle(t, p, want)
	if st := rep.r.Stats(); st.Misplaced != 1 {
		t.Errorf("stats %+v, want 1 misplaced", st)
	}
}

// TestResumeBeforeReachingTheParkedRecord: a resume requested while the
// session has not reached the parked record (a new session re-reading an
// uncommitted backlog) waits until it has.
func TestResumeBeforeReachingTheParkedRecord(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/review/early"
	var recs []rawRec
	for i := 1; i <= 20; i++ {
		recs = append(recs, ev("process/review/other", i, fmt.Sprint("y", i), ""))
	}
	recs = append(recs, ev(id, 1, "e1", ""), ev(id, 1, "e1-fork", ""), ev(id, 2, "e2", ""))
	produceRaw(t, cl, topic, recs...)
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, func(c *kafkarunner.Config) { c.FlushInterval = time.Hour; c.BatchSize = 1000 })
	f.waitCounts(t, p, map[string]int64{id: 1, "process/review/other": 20}, time.Minute)
	waitParked(t, rep, 1)
	rep.r.Crash() // nothing committed
	rep.stop(t)
	if err := rep.r.SkipParked(ctx, id, "test", "the fork is void"); err != nil {
		t.Fatal(err)
	}
	rep = f.start(t, p, func(c *kafkarunner.Config) { c.BatchSize = 1; c.ParkedRefresh = time.Millisecond })
	time.Sleep(5 * time.Second)
	res, _ := f.rstore.Resolutions(ctx, f.name, 10)
	t.Logf("resolutions: %+v", res)
	if parked := parkedByID(t, rep); len(parked) != 0 || f.counts(t, p)[id] != 2 {
		t.Fatalf("STALL: after the skip, count %d (want 2), parked again: %+v", f.counts(t, p)[id], parked)
	}
}

// TestRequestReplacedDuringResume: a second request while the worker
// carries out the first is refused (it would be ignored); the first
// completes and is recorded.
func TestRequestReplacedDuringResume(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/review/replace"
	produceRaw(t, cl, topic, ev(id, 1, "r1", ""), ev(id, 2, "r2", "Poison"), ev(id, 3, "r3", "Slow"))
	var buggy atomic.Bool
	buggy.Store(true)
	slow := make(chan struct{}, 1)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && buggy.Load() {
			return errors.New("poison")
		}
		if e.Type == "Slow" {
			select {
			case slow <- struct{}{}:
			default:
			}
			time.Sleep(3 * time.Second)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	buggy.Store(false)
	if err := rep.r.SkipParked(ctx, id, "alice", "by mistake"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-slow: // the resume applies X@3
	case <-time.After(20 * time.Second):
		t.Fatal("resume did not start")
	}
	if err := rep.r.RetryParked(ctx, id, "alice", "no: retry it, the bug is fixed"); err == nil || !strings.Contains(err.Error(), "wait until it is done") {
		t.Fatalf("a retry while a skip is carried out: %v; want it refused", err)
	}
	waitUnparked(t, rep, id)
	want := map[string]int64{id: 2} // 1 and 3: the skip of 2 was carried out
	f.waitCounts(t, p, want, 30*time.Second)
	f.settle(t, p, want)
	if res, _ := f.rstore.Resolutions(ctx, f.name, 10); len(res) != 1 || res[0].Action != controlplane.ResolveSkip {
		t.Fatalf("audit: %+v; want the skip", res)
	}
}

// TestSkipRecordedWhenReparked: a resume whose re-read hits a fork parks
// the stream again; the skip it carried out is recorded with the new park.
func TestSkipRecordedWhenReparked(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/review/audit"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "a1", ""), ev(id, 2, "a2", "Poison"), ev(id, 3, "a3", ""), ev(id, 3, "a3-fork", ""))
	p, buggy := f.fixableCounter(t)
	_ = buggy
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.SkipParked(ctx, id, "bob", "skip 2"); err != nil {
		t.Fatal(err)
	}
	f.waitCounts(t, p, map[string]int64{id: 2}, 30*time.Second)
	time.Sleep(time.Second)
	parked := parkedByID(t, rep)
	res, _ := f.rstore.Resolutions(ctx, f.name, 10)
	t.Logf("parked: %+v", parked[id])
	if len(res) != 1 || res[0].Action != controlplane.ResolveSkip || res[0].By != "bob" || !strings.Contains(res[0].Result, "parked again at sequence 3 (conflict)") {
		t.Fatalf("UNRECORDED SKIP: event 2 of %s was skipped (count 2) but the audit is %+v", id, res)
	}
	if parked[id].Reason != controlplane.ParkConflict || parked[id].Resolving != nil {
		t.Fatalf("parked %+v; want the fork, without a request", parked[id])
	}
}

// TestGapFilledLater: a retry of a gap whose missing event arrived later
// (behind the parked record) applies every event in sequence order.
func TestGapFilledLaterCannotBeResolved(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/review/late"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "l1", ""), ev(id, 3, "l3", ""), ev(id, 2, "l2", ""), ev(id, 4, "l4", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2 arrived"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	skipErr := rep.r.SkipParked(ctx, id, "test", "accept")
	if got := f.counts(t, p)[id]; got != 4 {
		t.Fatalf("STALL: count %d, want 4; parked %+v; skip: %v", got, parkedByID(t, rep)[id], skipErr)
	}
}

// TestResumeEndsAtAControlRecord: a session whose committed offset follows
// a transaction's commit marker (a replay to the end, a transactional
// producer) and that has processed nothing yet: the resume reads the
// marker and ends.
func TestResumeEndsAtAControlRecord(t *testing.T) {
	defer kafkarunner.SetHeldReadIdle(2 * time.Second)()
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	topic := f.store.Config().Topic
	const id = "process/review/txn"
	tx := f.env.Client(t, kgo.TransactionalID(uniqueName("tx")))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceRaw(t, tx, topic, ev(id, 1, "t1", "Poison"), ev(id, 2, "t2", ""), ev(id, 3, "t3", ""))
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	p, buggy := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	rep.stop(t)
	// A replay to "the end" (or a time after the last record): offset 4,
	// after the commit marker at 3.
	adm := kadm.NewClient(f.env.Client(t))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	t.Logf("end offset %d", end.Offset)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: end.Offset, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx, rep.r.Group(), offs); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	parked, err := f.rstore.Parked(ctx, f.name)
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked = %+v, %v", parked, err)
	}
	if _, err := f.rstore.BumpEpochAt(ctx, f.name, map[int32]int64{0: end.Offset}); err != nil {
		t.Fatal(err)
	}
	// The bump clears the parks (a replay rebuilds every stream); parked
	// again, the stream has a resume that reads a range ending in the
	// commit marker, in a session that has processed nothing.
	if err := f.rstore.Park(ctx, f.name, parked[0]); err != nil {
		t.Fatal(err)
	}
	buggy.Store(false)
	if _, err := (kafkarunner.Resolver{Parked: f.rstore}).Resolve(ctx, f.name, controlplane.Resolution{StreamID: id, Action: controlplane.ResolveRetry, By: "t", Reason: "fixed"}); err != nil {
		t.Fatal(err)
	}
	rep = f.start(t, p, nil)
	time.Sleep(15 * time.Second)
	st := rep.r.Partitions()
	t.Logf("count %d, parked %+v", f.counts(t, p)[id], parkedByID(t, rep))
	t.Logf("partitions: %+v", st)
	if len(st) == 1 && st[0].State == kafkarunner.PartitionRetrying && strings.Contains(st[0].Error, "no record between") {
		t.Fatalf("STALL: partition 0 retries the resume forever: %s", st[0].Error)
	}
}

// TestRedisErrorMidBatchHoldsNothingUnapplied: Redis refuses writes (OOM)
// while X@2 applies, before X's malformed record later in the batch: the
// batch is retried in place, X@2 applied, X parked at the malformed record
// only then; the retry applies the rest.
func TestRedisErrorMidBatchHoldsUnappliedEvents(t *testing.T) {
	f, srv := privateRedis(t, 1, testenv.RedisServerOptions{})
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/review/oom"
	produceRaw(t, cl, topic,
		ev(id, 1, "o1", ""), ev(id, 2, "o2", "Latch"),
		rawRec{stream: id, seq: "bad", id: "bad", typ: "Counted"},
		ev(id, 3, "o3", ""), ev(id, 4, "o4", ""))
	in, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Latch" && once.CompareAndSwap(false, true) {
			close(in)
			<-release
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := f.start(t, p, nil)
	<-in
	admin := srv.Client(t)
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	close(release)
	time.Sleep(2 * time.Second) // the apply, its retries and the park fail; process is retried in place
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "malformed record is in the DLQ"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	t.Logf("after retry: count %d, parked %+v", f.counts(t, p)[id], parkedByID(t, rep)[id])
	if err := rep.r.SkipParked(ctx, id, "test", "accept the missing events"); err != nil {
		t.Logf("skip: %v", err)
	}
	time.Sleep(3 * time.Second)
	if got := f.counts(t, p)[id]; got != 4 {
		t.Fatalf("LOSS/STALL: %s counted %d, want 4 (X@2 held behind the park, never applied); parked %+v", id, got, parkedByID(t, rep))
	}
}
