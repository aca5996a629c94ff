package kafkarunner_test

// Regression tests from a second adversarial review of the resume (each
// failed before its fix): events waiting for missing ones when the stream
// parks again, the head's high-water offset, dead letters of held records,
// batches retried in place, forks among waiting events, the park the apply
// script writes itself. The comments describe the fault as it was found.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// R2a: a resume keeps X@3 (at the parked offset) waiting for X@2, which
// comes later and fails; the stream is parked again at X@2's offset, so
// X@3 (before it) is held by nothing. After the fix and a retry the
// stream is unparked with X@3 never applied.
func TestWaitingEventSurvivesAFailingRepark(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/r2/wait-fail"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "w1", ""), ev(id, 3, "w3", ""), ev(id, 2, "w2", "Poison"))
	p, buggy := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2 arrived"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "parked again at 2", func() (bool, string) {
		pk := parkedByID(t, rep)[id]
		return pk.Sequence == 2 && pk.Resolving == nil, ""
	})
	t.Logf("re-parked: %+v", parkedByID(t, rep)[id])
	buggy.Store(false)
	if err := rep.r.RetryParked(ctx, id, "test", "bug fixed"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	parked := parkedByID(t, rep)
	got := f.counts(t, p)[id]
	if got != 3 {
		t.Fatalf("LOSS: %s counted %d of 3 events (X@3 never applied); parked now: %+v", id, got, parked)
	}
}

// R2b: the same with a fork: X@3 waits, a fork of X@1 after it parks X as
// a conflict at the fork's offset; skipping the fork unparks X with X@3
// never re-read; X@2 then arrives live and is applied: X@3 is gone.
func TestWaitingEventSurvivesAConflictRepark(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/r2/wait-fork"
	produceRaw(t, cl, topic, ev(id, 1, "k1", ""), ev(id, 3, "k3", ""), ev(id, 1, "k1-fork", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2 will come"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "parked again as a conflict", func() (bool, string) {
		pk := parkedByID(t, rep)[id]
		return pk.Reason == controlplane.ParkConflict && pk.Resolving == nil, ""
	})
	t.Logf("re-parked: %+v", parkedByID(t, rep)[id])
	if err := rep.r.SkipParked(ctx, id, "test", "the fork is void"); err != nil {
		t.Fatal(err)
	}
	// X@3 still waits for X@2, which is not in the partition yet: the
	// stream parks again at X@3, as a gap (it was lost before the fix).
	waitFor(t, 30*time.Second, "parked again at 3, a gap", func() (bool, string) {
		pk := parkedByID(t, rep)[id]
		return pk.Reason == controlplane.ParkGap && pk.Sequence == 3 && pk.Resolving == nil, fmt.Sprintf("%+v", pk)
	})
	produceRaw(t, cl, topic, ev(id, 2, "k2", ""))
	time.Sleep(time.Second) // X@2 is held
	if err := rep.r.RetryParked(ctx, id, "test", "2 arrived"); err != nil {
		t.Fatal(err)
	}
	waitUnparked(t, rep, id)
	time.Sleep(2 * time.Second)
	parked := parkedByID(t, rep)
	got := f.counts(t, p)[id]
	if got != 3 || len(parked) != 0 {
		t.Fatalf("LOSS: %s counted %d of 3 events (X@3 never applied), parked now: %+v", id, got, parked)
	}
}

func dlqRecords(t *testing.T, f *fixture, key string) []string {
	t.Helper()
	cl := f.env.Client(t, consumeFromStart(f.store.Config().Topic+".dead-letter")...)
	var out []string
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(ctxFor(t), time.Second)
		fs := cl.PollFetches(c)
		cancel()
		for _, r := range fs.Records() {
			if string(r.Key) == key {
				out = append(out, headerOf(r, "projector.dlq.source")+" "+headerOf(r, "projector.dlq.reason"))
			}
		}
	}
	return out
}

// R2c: X@1, X@2 (fails), a malformed record of X, in one batch. The
// malformed record triggers parkAt, which applies the run: X@2 fails and
// parks X; the malformed record is then counted held and never
// dead-lettered (it is when the run is empty); the retry passes over it
// "as dead-lettered when met".
func TestHeldMalformedIsDeadLettered(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/r2/mal"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "m1", ""), ev(id, 2, "m2", "Poison"),
		rawRec{stream: id, seq: "bad", id: "bad", typ: "Counted"}, ev(id, 3, "m3", ""))
	p, buggy := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(2 * time.Second)
	dl := dlqRecords(t, f, id)
	t.Logf("dead letters of %s: %v", id, dl)
	buggy.Store(false)
	if err := rep.r.RetryParked(ctx, id, "test", "fixed"); err != nil {
		t.Fatal(err)
	}
	waitUnparked(t, rep, id)
	res, _ := f.rstore.Resolutions(ctx, f.name, 5)
	if len(res) > 0 {
		t.Logf("resolution: %s", res[0].Result)
	}
	if len(dl) != 2 {
		t.Fatalf("AUDIT: the malformed record at offset 2 was passed over but never dead-lettered: dead letters %v", dl)
	}
}

// R2d: a resume applies X@2..X@10 (X@10 waited for them) and parks X
// again at X@12 (X@11 missing), which sits at a lower offset than the
// applied events: the head's offset is their high-water mark. The admin
// skips the gap (the resolver approves: X@13 is held). skipInMemory
// replaces the head with offset (X@12's offset - 1), so the applied X@2
// re-read after X@12 looks like a fork: the stream is parked as a
// conflict for an event that was applied exactly once.
func TestSkipKeepsTheHeadsHighWater(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/r2/hw"
	recs := []rawRec{ev(id, 1, "h1", ""), ev(id, 10, "h10", ""), ev(id, 12, "h12", "")}
	for i := 2; i <= 9; i++ {
		recs = append(recs, ev(id, i, "h"+itoa(i), ""))
	}
	recs = append(recs, ev(id, 13, "h13", ""))
	produceRaw(t, cl, f.store.Config().Topic, recs...)
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2..9 arrived"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "parked again at 12", func() (bool, string) {
		pk := parkedByID(t, rep)[id]
		return pk.Sequence == 12 && pk.Resolving == nil, ""
	})
	t.Logf("count %d, re-parked %+v", f.counts(t, p)[id], parkedByID(t, rep)[id])
	time.Sleep(time.Second)
	if err := rep.r.SkipParked(ctx, id, "test", "11 is lost"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	parked := parkedByID(t, rep)
	got := f.counts(t, p)[id]
	if got != 12 || len(parked) != 0 {
		t.Fatalf("STALL: count %d (want 12: 1..10, 12, 13), parked: %+v", got, parked)
	}
}

// R2e: the resume applies X@2 (offset 2) then X@3 (offset 1, it waited)
// with an AtomicProjection: its script stores the head as "3@0/1" (the
// event's own offset, not the high-water mark the runner keeps). A crash
// before the resume's flush; the next owner re-reads from offset 1 and
// takes the applied X@2 at offset 2 (after the head's offset) for a fork.
func TestCrashMidResumeAfterWaitingEvents(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/r2/crashwait"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "c1", ""), ev(id, 3, "c3", ""), ev(id, 2, "c2", ""), ev(id, 4, "c4", "Latch"))
	p, _ := f.fixableCounter(t)
	var hold atomic.Bool
	hold.Store(true)
	l := &latched{p: p, hold: &hold, in: make(chan struct{}, 1)}
	rep := f.start(t, l, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2 arrived"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.in:
	case <-time.After(30 * time.Second):
		t.Fatal("the resume did not reach X@4")
	}
	rep.r.Crash()
	rep.stop(t)
	heads, _ := f.rdb.HGetAll(ctx, "{"+f.ns+":"+f.name+"}:heads").Result()
	t.Logf("count after crash %d, stored heads %v", f.counts(t, p)[id], heads)
	hold.Store(false)
	rep = f.start(t, l, nil)
	time.Sleep(5 * time.Second)
	parked := parkedByID(t, rep)
	got := f.counts(t, p)[id]
	if got != 4 || len(parked) != 0 {
		t.Fatalf("STALL: count %d (want 4), parked %+v", got, parked)
	}
}

// R2f: a malformed record of X parks X (dead letter 1); Y@1 later in the
// batch fails on a Redis OOM, so process() is retried in place: the
// malformed record is now "held behind X's park" and dead-lettered again.
func TestRetriedBatchDeadLettersOnce(t *testing.T) {
	f, srv := privateRedis(t, 1, testenv.RedisServerOptions{})
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const x, y = "process/r2/dlx", "process/r2/dly"
	produceRaw(t, cl, f.store.Config().Topic, rawRec{stream: x, seq: "bad", id: "bad", typ: "Counted"}, ev(y, 1, "y1", "Latch"))
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
	f.start(t, p, nil)
	<-in
	admin := srv.Client(t)
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	close(release)
	time.Sleep(2 * time.Second)
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	f.waitCounts(t, p, map[string]int64{y: 1}, 30*time.Second)
	dl := dlqRecords(t, f, x)
	if len(dl) != 1 {
		t.Fatalf("DOUBLE DEAD LETTER: the malformed record of %s was dead-lettered %d times: %v", x, len(dl), dl)
	}
}

// R2g: two events at sequence 3 wait in a resume (offsets 1 and 2) for
// X@2. slices.Insert puts the later one first, so the resume applies the
// fork at offset 2 and parks the earlier record (offset 1) as the
// conflict: the opposite of what live processing decides.
func TestForkAmongWaitingAppliesTheFirstRecord(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/r2/wfork"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "g1", ""), ev(id, 3, "g3-first", ""), ev(id, 3, "g3-second", ""), ev(id, 2, "g2", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	waitParked(t, rep, 1)
	time.Sleep(time.Second)
	if err := rep.r.RetryParked(ctx, id, "test", "2 arrived"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "parked again as a conflict", func() (bool, string) {
		pk := parkedByID(t, rep)[id]
		return pk.Reason == controlplane.ParkConflict, ""
	})
	pk := parkedByID(t, rep)[id]
	if pk.EventID != "g3-second" {
		t.Fatalf("ORDER: the resume applied g3-second (offset 2) and parked g3-first (offset %d) as the fork: %s", pk.Position.Offset, pk.Error)
	}
}

// R2h: the record applyScript writes itself on a PARTIAL (for a crash
// before the runner's own park): no parked_at, no position. Skip (the only
// resolution of a partial apply besides a replay) is refused forever.
func TestScriptWrittenPartialParkCanBeResolved(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	const id = "process/r2/partial"
	key := f.ns + ":{" + f.name + "}:parked"
	if err := f.rdb.HSet(ctx, key, id, `{"event_id":"p5","reason":"partial-apply","stream_id":"process/r2/partial","sequence":5,"error":"the store applied part of this event"}`).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := (kafkarunner.Resolver{Parked: f.rstore}).Resolve(ctx, f.name, controlplane.Resolution{StreamID: id, Action: controlplane.ResolveSkip, By: "t", Reason: "replayed"})
	if err != nil {
		t.Fatalf("STALL: the script-written partial-apply park cannot be skipped: %v", err)
	}
}
