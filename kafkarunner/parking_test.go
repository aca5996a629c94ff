package kafkarunner_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// The tests of this file park streams and resume them with records written
// by a raw franz-go producer (murmur2, like the Java client) that the
// stream catalog never sees, and count the applied events per stream
// exactly.

// fixableCounter counts events per stream; events of type "Poison" fail
// while buggy is set.
func (f *fixture) fixableCounter(t *testing.T) (*redischeckpoint.AtomicProjection, *atomic.Bool) {
	t.Helper()
	var buggy atomic.Bool
	buggy.Store(true)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && buggy.Load() {
			return fmt.Errorf("cannot apply %s: poison", e)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, &buggy
}

// rawRec is a record of the header contract; seq is written as given (a
// malformed one does not decode).
type rawRec struct {
	stream, seq, id, typ string
}

func ev(stream string, seq int, id, typ string) rawRec {
	return rawRec{stream: stream, seq: itoa(seq), id: id, typ: typ}
}

// produceRaw writes the records in order, keyed by stream ID, with the
// client's default partitioner (murmur2).
func produceRaw(t *testing.T, cl *kgo.Client, topic string, recs ...rawRec) {
	t.Helper()
	for _, r := range recs {
		typ := r.typ
		if typ == "" {
			typ = "Counted"
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(r.stream), Headers: []kgo.RecordHeader{
			{Key: kafkastore.HeaderStreamID, Value: []byte(r.stream)},
			{Key: kafkastore.HeaderSequence, Value: []byte(r.seq)},
			{Key: kafkastore.HeaderEventID, Value: []byte(r.id)},
			{Key: kafkastore.HeaderType, Value: []byte(typ)},
		}}
		if err := cl.ProduceSync(ctxFor(t), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// settle checks that the counts stay exact for a moment longer (an event
// applied twice late would otherwise go unseen).
func (f *fixture) settle(t *testing.T, p *redischeckpoint.AtomicProjection, want map[string]int64) {
	t.Helper()
	time.Sleep(time.Second)
	f.waitCounts(t, p, want, 10*time.Second)
}

func parkedByID(t *testing.T, rep *replica) map[string]controlplane.ParkedStream {
	t.Helper()
	list, err := rep.r.Parked(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]controlplane.ParkedStream{}
	for _, p := range list {
		out[p.StreamID] = p
	}
	return out
}

// waitUnparked waits until the listed streams are no longer parked.
func waitUnparked(t *testing.T, rep *replica, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		parked := parkedByID(t, rep)
		left := 0
		for _, id := range ids {
			if _, ok := parked[id]; ok {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %v still parked after 30s: %+v", left, ids, parked)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestResumeReadsHeldEventsFromKafka: a retry applies the events held
// behind the parked one, read from the partition, for a stream the catalog
// never knew (a raw producer), for one whose catalog entry is stale, and it
// recognises a fork held behind the park.
func TestResumeReadsHeldEventsFromKafka(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const raw, stale, fork = "process/raw/s", "process/raw/c", "process/raw/f"
	produceRaw(t, cl, topic,
		ev(raw, 1, "s1", ""), ev(raw, 2, "s2", "Poison"), ev(raw, 3, "s3", ""), ev(raw, 4, "s4", ""), ev(raw, 5, "s5", ""),
		ev(fork, 1, "f1", ""), ev(fork, 2, "f2", "Poison"), ev(fork, 3, "f3", ""), ev(fork, 3, "f3-fork", ""), ev(fork, 4, "f4", ""))
	if _, err := f.store.Append(ctx, stale, framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Poison"}}); err != nil {
		t.Fatal(err)
	}
	produceRaw(t, cl, topic, ev(stale, 3, "c3", ""), ev(stale, 4, "c4", "")) // the catalog stays at 2

	p, buggy := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	want := map[string]int64{raw: 1, stale: 1, fork: 1}
	f.waitCounts(t, p, want, time.Minute)
	waitParked(t, rep, 3)
	buggy.Store(false)
	for _, id := range []string{raw, stale, fork} {
		if err := rep.r.RetryParked(ctx, id, "test", "fixed"); err != nil {
			t.Fatal(err)
		}
	}
	want = map[string]int64{raw: 5, stale: 4, fork: 3}
	f.waitCounts(t, p, want, 30*time.Second)
	waitUnparked(t, rep, raw, stale)
	// The fork held behind the park is a conflict: parked again there.
	parked := parkedByID(t, rep)
	if pf, ok := parked[fork]; !ok || pf.Reason != controlplane.ParkConflict || pf.Sequence != 3 || pf.EventID != "f3-fork" || len(parked) != 1 {
		t.Fatalf("parked = %+v; want only %s, at its fork", parked, fork)
	}
	// Later events flow live.
	produceRaw(t, cl, topic, ev(raw, 6, "s6", ""))
	want[raw] = 6
	f.waitCounts(t, p, want, 30*time.Second)
	f.settle(t, p, want)
	res, err := f.rstore.Resolutions(ctx, f.name, 10)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]string{}
	for _, r := range res {
		results[r.StreamID] = r.Result
	}
	if results[raw] != "applied 4 events" || results[stale] != "applied 3 events" {
		t.Errorf("resolutions record %q", results)
	}
}

// TestResolutionWaitsForAnOwner: a retry recorded while no replica owns the
// stream's partition (scaled to zero, or paused for a deploy) is carried
// out by the next owner, with the events that arrived meanwhile.
func TestResolutionWaitsForAnOwner(t *testing.T) {
	for _, how := range []string{"scaled-to-zero", "paused"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t, 2)
			ctx := ctxFor(t)
			cl := f.env.Client(t)
			topic := f.store.Config().Topic
			const id = "process/owner/a"
			produceRaw(t, cl, topic, ev(id, 1, "a1", ""), ev(id, 2, "a2", "Poison"), ev(id, 3, "a3", ""))
			p, buggy := f.fixableCounter(t)
			rep := f.start(t, p, nil)
			want := map[string]int64{id: 1}
			f.waitCounts(t, p, want, time.Minute)
			waitParked(t, rep, 1)
			switch how {
			case "scaled-to-zero":
				rep.stop(t)
			case "paused":
				if err := f.rstore.SetPaused(ctx, f.name, true, "test", "deploying the fix"); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(30 * time.Second); rep.r.State() != "paused"; time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("state %s after 30s, want paused", rep.r.State())
					}
				}
			}
			produceRaw(t, cl, topic, ev(id, 4, "a4", ""), ev(id, 5, "a5", ""))
			buggy.Store(false) // the fix is deployed
			if err := rep.r.RetryParked(ctx, id, "test", "fixed"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if parked := parkedByID(t, rep); parked[id].Resolving == nil {
				t.Fatalf("parked = %+v; want the retry recorded, waiting for an owner", parked)
			}
			switch how {
			case "scaled-to-zero":
				rep = f.start(t, p, nil)
			case "paused":
				if err := f.rstore.SetPaused(ctx, f.name, false, "test", "deployed"); err != nil {
					t.Fatal(err)
				}
			}
			want[id] = 5
			f.waitCounts(t, p, want, 30*time.Second)
			waitUnparked(t, rep, id)
			f.settle(t, p, want)
		})
	}
}

// TestResumeSurvivesARedisError: Redis refuses every write (out of memory,
// a real error from the real server) while the worker resumes a stream;
// the stream stays parked with the retry recorded, and once Redis accepts
// writes again the resume completes without losing a held event.
func TestResumeSurvivesARedisError(t *testing.T) {
	f, srv := privateRedis(t, 2, testenv.RedisServerOptions{})
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/oom/a"
	produceRaw(t, cl, topic, ev(id, 1, "a1", ""), ev(id, 2, "a2", "Poison"), ev(id, 3, "a3", ""), ev(id, 4, "a4", ""))
	p, buggy := f.fixableCounter(t)
	rep := f.start(t, p, func(c *kafkarunner.Config) { c.ParkedRefresh = 2 * time.Second })
	want := map[string]int64{id: 1}
	f.waitCounts(t, p, want, time.Minute)
	waitParked(t, rep, 1)
	buggy.Store(false)
	admin := srv.Client(t)
	if err := rep.r.RetryParked(ctx, id, "test", "fixed"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	// Writes fail with a real OOM error from the server.
	if err := f.rdb.Set(ctx, "probe", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("a write with maxmemory 1: %v, want OOM", err)
	}
	time.Sleep(5 * time.Second) // two refreshes: the resume fails in them
	if got := f.counts(t, p)[id]; got != 1 {
		t.Fatalf("applied %d events of %s while Redis refused writes", got, id)
	}
	if parked := parkedByID(t, rep); parked[id].Resolving == nil {
		t.Fatalf("parked = %+v; want the stream parked with the retry still recorded", parked)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	want[id] = 4
	f.waitCounts(t, p, want, 30*time.Second)
	waitUnparked(t, rep, id)
	f.settle(t, p, want)
}

// TestMalformedRecordOfALiveStream: a record keyed with a live stream that
// does not decode parks the stream with a reason that says so; a second
// malformed record behind it is held (the park stays at the first); retry
// passes over both (reported) and applies every event held behind them.
func TestMalformedRecordOfALiveStream(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/malformed/a"
	produceRaw(t, cl, topic, ev(id, 1, "m1", ""), ev(id, 2, "m2", ""),
		rawRec{stream: id, seq: "two and a half", id: "bad1", typ: "Counted"},
		ev(id, 3, "m3", ""),
		rawRec{stream: id, seq: "", id: "bad2", typ: "Counted"},
		ev(id, 4, "m4", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	want := map[string]int64{id: 2}
	f.waitCounts(t, p, want, time.Minute)
	waitParked(t, rep, 1)
	time.Sleep(time.Second) // the rest of the partition is processed (held)
	parked := waitParked(t, rep, 1)
	if len(parked) != 1 || parked[0].StreamID != id || parked[0].Reason != controlplane.ParkMalformed ||
		!strings.Contains(parked[0].Error, "does not decode") || !strings.Contains(parked[0].Error, "projector.sequence") {
		t.Fatalf("parked = %+v; want %s parked as malformed at its first bad record", parked, id)
	}
	first := parked[0].Position
	if err := rep.r.RetryParked(ctx, id, "test", "the bad records are in the dead-letter topic"); err != nil {
		t.Fatal(err)
	}
	want[id] = 4
	f.waitCounts(t, p, want, 30*time.Second)
	waitUnparked(t, rep, id)
	f.settle(t, p, want)
	res, err := f.rstore.Resolutions(ctx, f.name, 1)
	if err != nil || len(res) != 1 || !strings.Contains(res[0].Result, "applied 2 events; passed over 2 records") ||
		!strings.Contains(res[0].Result, fmt.Sprintf("%d (the parked record", first.Offset)) {
		t.Errorf("resolution = %+v, %v", res, err)
	}
	if st := rep.r.Stats(); st.PassedOver != 2 {
		t.Errorf("stats = %+v, want 2 passed over", st)
	}
}

// TestSkipOfAnImpossibleSequence: a record with sequence 2^64-1 parks its
// stream as a gap; skipping it (accepting the "missing" events) is refused
// because it would drop the events held behind it; --drop passes over the
// bogus record and the stream goes on.
func TestSkipOfAnImpossibleSequence(t *testing.T) {
	f := newFixture(t, 2)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	const id = "process/huge/a"
	produceRaw(t, cl, topic, ev(id, 1, "h1", ""), ev(id, 2, "h2", ""),
		rawRec{stream: id, seq: "18446744073709551615", id: "bogus", typ: "Counted"},
		ev(id, 3, "h3", ""), ev(id, 4, "h4", ""), ev(id, 5, "h5", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	want := map[string]int64{id: 2}
	f.waitCounts(t, p, want, time.Minute)
	parked := waitParked(t, rep, 1)
	if parked[0].Reason != controlplane.ParkGap || parked[0].Sequence != 1<<64-1 {
		t.Fatalf("parked = %+v", parked)
	}
	time.Sleep(time.Second) // 3..5 are held
	err := rep.r.SkipParked(ctx, id, "test", "bogus sequence")
	if err == nil || !strings.Contains(err.Error(), "3 events held behind it (sequences 3, 4, 5)") || !strings.Contains(err.Error(), "--drop") {
		t.Fatalf("skip of an impossible sequence: %v; want it refused, naming the held events", err)
	}
	if _, err := rep.r.Resolver().Resolve(ctx, f.name, controlplane.Resolution{StreamID: id, Action: controlplane.ResolveSkip, By: "test",
		Reason: "bogus sequence from a broken producer", Drop: true}); err != nil {
		t.Fatal(err)
	}
	want[id] = 5
	f.waitCounts(t, p, want, 30*time.Second)
	waitUnparked(t, rep, id)
	produceRaw(t, cl, topic, ev(id, 6, "h6", ""))
	want[id] = 6
	f.waitCounts(t, p, want, 30*time.Second)
	f.settle(t, p, want)
}

// TestRetryOfAnEventThatCanNeverApply: a conflict cannot be retried (its
// sequence was applied as another event); the refusal says so.
func TestRetryOfAnEventThatCanNeverApply(t *testing.T) {
	f := newFixture(t, 2)
	ctx := ctxFor(t)
	cl := f.env.Client(t)
	const id = "process/never/a"
	produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, "n1", ""), ev(id, 2, "n2", ""), ev(id, 2, "n2-other", ""), ev(id, 3, "n3", ""))
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	want := map[string]int64{id: 2}
	f.waitCounts(t, p, want, time.Minute)
	waitParked(t, rep, 1)
	err := rep.r.RetryParked(ctx, id, "test", "try")
	if err == nil || !strings.Contains(err.Error(), "can never apply") {
		t.Fatalf("retry of a conflict: %v", err)
	}
	if err := rep.r.SkipParked(ctx, id, "test", "the other writer's event is void"); err != nil {
		t.Fatal(err)
	}
	want[id] = 3
	f.waitCounts(t, p, want, 30*time.Second)
	waitUnparked(t, rep, id)
	f.settle(t, p, want)
	if _, err := rep.r.Resolver().Resolve(ctx, f.name, controlplane.Resolution{StreamID: id, Action: controlplane.ResolveSkip, By: "test", Reason: "x"}); !errors.Is(err, kafkarunner.ErrNotParked) {
		t.Errorf("resolving an unparked stream: %v", err)
	}
}
