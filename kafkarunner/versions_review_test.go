package kafkarunner_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Regression tests from an adversarial review of the versioned read models:
// each failed before its fix.

// TestRebuildBlockedByAnEarlierParkInTheNewVersion: newlyParked compares the parked
// stream IDs only. A stream parked in the live version at sequence 3 and in
// the new version already at sequence 2 is "not newly parked": the rebuild
// switches, and the live read model loses event 2 of the stream.
func TestRebuildBlockedByAnEarlierParkInTheNewVersion(t *testing.T) {
	f := newFixture(t, 1)
	want := f.produce(t, 5, 2, "process/t/")
	// X: 1 applies everywhere; 2 fails only in the new version's code; 3
	// fails in every version (the live version parks there).
	produceRaw(t, f.env.Client(t), f.store.Config().Topic,
		ev("process/t/x", 1, "x1", ""), ev("process/t/x", 2, "x2", "NewBug"), ev("process/t/x", 3, "x3", "Poison"))
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" || (e.Type == "NewBug" && strings.Contains(w.Key(""), ":v1:")) {
			return fmt.Errorf("cannot apply %s", e)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.versioned(t, p)
	want["process/t/x"] = 2 // events 1 and 2; parked at 3
	f.waitCounts(t, p, want, 2*time.Minute)
	waitFor(t, time.Minute, "x parked at 3 in the live version", func() (bool, string) {
		parked, err := f.rstore.Parked(ctxFor(t), f.name)
		return err == nil && len(parked) == 1 && parked[0].Sequence == 3, fmt.Sprint(parked, err)
	})
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		vs, err := f.rstore.Versions(ctxFor(t), f.name)
		if err != nil {
			t.Fatal(err)
		}
		if vs.Live == 1 {
			got := f.counts(t, version(t, p, 1))
			p1, _ := f.rstore.Parked(ctxFor(t), f.name+"@v1")
			t.Errorf("switched to v1 although process/t/x is parked there at an earlier sequence: live v0 had x=%d, the new live v1 has x=%d; parked in v1: %+v",
				f.counts(t, p)["process/t/x"], got["process/t/x"], p1)
			return
		}
		if vs.Building != nil && vs.Building.Blocked != "" {
			t.Logf("blocked as it should be: %s", vs.Building.Blocked)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Log("no switch within a minute")
}

// TestRebuildOfATruncatedTopicDoesNotSwitch: the rebuild reads "from the start"
// of a topic whose start offset is no longer 0 (retention with
// Config.AllowFiniteRetention, or DeleteRecords): the streams whose events
// are all gone are absent from the new version, nothing parks (there is no
// gap to see), and the rebuild switches: the live model loses them.
func TestRebuildOfATruncatedTopicDoesNotSwitch(t *testing.T) {
	f := newFixture(t, 2)
	want := f.produce(t, 10, 2, "process/old/")
	p := f.counter(t)
	f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	// What retention does to old segments: delete the records before the
	// end.
	adm := f.env.Admin(t)
	ends, err := adm.ListEndOffsets(ctxFor(t), f.store.Config().Topic)
	if err != nil {
		t.Fatal(err)
	}
	del, err := adm.DeleteRecords(ctxFor(t), ends.Offsets())
	if err != nil || del.Error() != nil {
		t.Fatalf("delete records: %v %v", err, del.Error())
	}
	cl := f.env.Client(t)
	for i := range 5 {
		id := fmt.Sprintf("process/new/%05d", i)
		produceRaw(t, cl, f.store.Config().Topic, ev(id, 1, id+"-1", ""), ev(id, 2, id+"-2", ""))
		want[id] = 2
	}
	f.waitCounts(t, p, want, time.Minute)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	vs := f.waitVersions(t, "the rebuild blocked", time.Minute, func(vs controlplane.Versions) bool {
		return vs.Building != nil && vs.Building.Blocked != ""
	})
	if b := vs.Building.Blocked; vs.Live != 0 || !strings.Contains(b, "10 stream(s) are behind") || !strings.Contains(b, "process/old/") {
		t.Errorf("blocked = %q (live v%d), want the 10 streams whose events were deleted named", b, vs.Live)
	}
	if got := f.counts(t, p); len(got) != len(want) {
		t.Errorf("the live model holds %d streams, want %d", len(got), len(want))
	}
}

// TestRebuildDoesNotSwitchWhileTheLiveVersionIsPaused: `projectorctl pause billing` pauses the
// live version only. A rebuild in progress keeps writing, switches while the
// projection is paused, and the new live version is not paused: the
// projection resumes by itself.
func TestRebuildDoesNotSwitchWhileTheLiveVersionIsPaused(t *testing.T) {
	f := newFixture(t, 1)
	want := f.produce(t, 5, 2, "process/t/")
	p := f.counter(t)
	f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	if err := f.rstore.SetPaused(ctxFor(t), f.name, true, "op", "stop all writes: the apply code has a bug"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	vs := f.waitVersions(t, "the rebuild blocked by the pause", time.Minute, func(vs controlplane.Versions) bool {
		return vs.Building != nil && vs.Building.Blocked != ""
	})
	if b := vs.Building.Blocked; vs.Live != 0 || !strings.Contains(b, "is paused") {
		t.Fatalf("blocked = %q (live v%d), want the pause named", b, vs.Live)
	}
	if err := f.rstore.SetPaused(ctxFor(t), f.name, false, "op", ""); err != nil {
		t.Fatal(err)
	}
	f.waitVersions(t, "switched after the resume", time.Minute, func(vs controlplane.Versions) bool { return vs.Live == 1 })
	more := f.produce(t, 3, 1, "process/u/")
	for id, n := range more {
		want[id] = n
	}
	f.waitCounts(t, version(t, p, 1), want, time.Minute)
}

// TestRebuildSwitchDoesNotGoBack: at the switch the new version has caught up
// only with the end of the topic as of the previous check: the model served
// after the switch can hold fewer events than the one served just before
// (a reader that saw an invoice line loses it again until the new version
// catches up; a read-your-writes wait satisfied just before the switch is
// no longer satisfied by the live model).
//
// The moment between the runner's last comparison and the switch is made
// to hold what it can hold (in CI the live version applied 20 more events
// in it): right before the first switch attempt the live version applies
// an event the topic gets only a second later (its cursor and count are
// written as its script would). The store's SwitchLive must compare the
// cursors again in the switch's own transaction and wait for the new
// version to hold that event too.
func TestRebuildSwitchDoesNotGoBack(t *testing.T) {
	f := newFixture(t, 2)
	p := f.counter(t)
	const late = "process/x/late"
	var once sync.Once
	defer kafkarunner.SetBeforeSwitch(func() {
		once.Do(func() {
			ctx := ctxFor(t)
			cursors := f.ns + ":{" + f.name + "}:cursors"
			if err := f.rdb.HSet(ctx, cursors, late, 1).Err(); err != nil {
				t.Error(err)
			}
			if err := f.rdb.HIncrBy(ctx, p.Key("counts"), late, 1).Err(); err != nil {
				t.Error(err)
			}
			go func() {
				time.Sleep(time.Second)
				produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev(late, 1, late, ""))
			}()
		})
	})()
	want := f.produce(t, 20, 2, "process/t/")
	f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var appended atomic.Int64
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	wg.Go(func() {
		// 400 streams, each growing: the switch compares every stream's
		// cursor, and a steady stream of brand-new streams makes that
		// comparison slower with every check (see docs/rebuild.md).
		for i := 0; ctx.Err() == nil; i++ {
			id := fmt.Sprintf("process/s/%04d", i%400)
			r := ev(id, i/400+1, fmt.Sprintf("%s-%d", id, i/400+1), "")
			rec := &kgo.Record{Topic: topic, Key: []byte(id), Headers: []kgo.RecordHeader{
				{Key: kafkastore.HeaderStreamID, Value: []byte(r.stream)},
				{Key: kafkastore.HeaderSequence, Value: []byte(r.seq)},
				{Key: kafkastore.HeaderEventID, Value: []byte(r.id)},
				{Key: kafkastore.HeaderType, Value: []byte("Counted")},
			}}
			cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err == nil {
					appended.Add(1)
				}
			})
			if i%20 == 19 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	defer wg.Wait()
	defer cancel()
	time.Sleep(time.Second)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	v0, v1 := p, version(t, p, 1)
	reg := f.ns + ":{" + f.name + "}:versions"
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pipe := f.rdb.TxPipeline()
		live := pipe.HGet(ctxFor(t), reg, "live")
		c0 := pipe.HGetAll(ctxFor(t), v0.Key("counts"))
		c1 := pipe.HGetAll(ctxFor(t), v1.Key("counts"))
		if _, err := pipe.Exec(ctxFor(t)); err != nil && live.Err() == nil {
			t.Fatal(err)
		}
		if live.Val() != "1" {
			continue
		}
		sum := func(m map[string]string) (n int64) {
			for _, v := range m {
				var x int64
				fmt.Sscan(v, &x)
				n += x
			}
			return n
		}
		s0, s1 := sum(c0.Val()), sum(c1.Val())
		var behind []string
		for id, v := range c0.Val() {
			var n0, n1 int64
			fmt.Sscan(v, &n0)
			fmt.Sscan(c1.Val()[id], &n1)
			if n1 < n0 && len(behind) < 5 {
				behind = append(behind, fmt.Sprintf("%s: %d -> %d", id, n0, n1))
			}
		}
		t.Logf("at the switch (first read of live=1): v0 (frozen, served until the switch) holds %d events, v1 (served from now on) %d; %d appended so far", s0, s1, appended.Load())
		if len(behind) > 0 {
			t.Errorf("the model served right after the switch went back (v0 held %d events, v1 %d); streams that went back: %v", s0, s1, behind)
		}
		return
	}
	t.Fatal("no switch")
}

// TestRebuildSwitchesAfterATransactionMarker: the topic ends with a
// transaction's commit marker (a transactional producer, such as the Java
// producer the project supports). The new version's committed offset is
// the last record + 1 (the marker's offset); the last stable offset is one
// past the marker: caughtUp never holds and the rebuild never switches,
// although the new version has applied everything.
func TestRebuildSwitchesAfterATransactionMarker(t *testing.T) {
	f := newFixture(t, 1)
	topic := f.store.Config().Topic
	tx := f.env.Client(t, kgo.TransactionalID(uniqueName("tx")))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceRaw(t, tx, topic, ev("process/t/a", 1, "a1", ""), ev("process/t/a", 2, "a2", ""), ev("process/t/b", 1, "b1", ""))
	if err := tx.EndTransaction(ctxFor(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	p := f.counter(t)
	vr, _ := f.versioned(t, p)
	want := map[string]int64{"process/t/a": 2, "process/t/b": 1}
	f.waitCounts(t, p, want, time.Minute)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	f.waitCounts(t, version(t, p, 1), want, time.Minute)
	time.Sleep(15 * time.Second)
	vs, err := f.rstore.Versions(ctxFor(t), f.name)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Live != 1 {
		t.Errorf("the new version has applied everything, but 15 s later the rebuild has not switched; replica says %q; versions %+v",
			vr.RebuildStatus(), vs)
	}
}

// TestRebuildStalePreviousCheckDoesNotSwitch: caughtUp compares the new version's
// committed offsets with the ends the replica saw at ITS previous check,
// however old that is. A replica whose previous check is old (frozen by
// SIGSTOP, or whose checks failed for a while: lastEnds is only updated by
// a check that succeeds) switches as soon as the new version has passed
// that old end, while it is far behind the topic and the live version:
// the model served after the switch lacks most recent events.
func TestRebuildStalePreviousCheckDoesNotSwitch(t *testing.T) {
	f := newFixture(t, 1)
	topic := f.store.Config().Topic
	cl := f.env.Client(t)
	produceMany := func(prefix string, n int) {
		var wg sync.WaitGroup
		for i := range n {
			id := fmt.Sprintf("%s%06d", prefix, i)
			wg.Add(1)
			cl.Produce(ctxFor(t), &kgo.Record{Topic: topic, Key: []byte(id), Headers: []kgo.RecordHeader{
				{Key: kafkastore.HeaderStreamID, Value: []byte(id)},
				{Key: kafkastore.HeaderSequence, Value: []byte("1")},
				{Key: kafkastore.HeaderEventID, Value: []byte(id)},
				{Key: kafkastore.HeaderType, Value: []byte("Counted")},
			}}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
	}
	produceMany("process/a/", 20)
	// The new version's code is slower (3 ms per event).
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if strings.Contains(w.Key(""), ":v1:") {
			time.Sleep(3 * time.Millisecond)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.versioned(t, p) // replica A, checking every 200 ms
	want := map[string]int64{}
	for i := range 20 {
		want[fmt.Sprintf("process/a/%06d", i)] = 1
	}
	f.waitCounts(t, p, want, time.Minute)
	// Replica Z: its last check happens right at the start of the rebuild.
	z, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
		Name:          f.name,
		NewProjection: func(name string) (framework.Projection, error) { return p.Version(name) },
		Runner:        kafkarunner.Config{Seeds: f.env.Seeds, Topic: topic, Checkpoints: f.rstore, ReplicaID: "zombie"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := kafkarunner.CheckRebuildOnce(ctxFor(t), z); err != nil { // remembers the end now (20)
		t.Fatal(err)
	}
	// Z is frozen; meanwhile 3000 events arrive.
	produceMany("process/b/", 3000)
	waitFor(t, time.Minute, "v1 committed past the end Z saw", func() (bool, string) {
		got, err := f.env.Admin(t).FetchOffsets(ctxFor(t), framework.VersionGroup(f.name, 1))
		if err != nil {
			return false, err.Error()
		}
		o, ok := got.Lookup(topic, 0)
		return ok && o.At >= 20, fmt.Sprint(o)
	})
	vs, err := kafkarunner.CheckRebuildOnce(ctxFor(t), z) // Z wakes and checks
	if err != nil {
		t.Fatal(err)
	}
	if vs.Live != 1 {
		t.Logf("Z did not switch, as it should not: %+v", vs)
		return
	}
	sum := func(m map[string]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	s0, s1 := sum(f.counts(t, p)), sum(f.counts(t, version(t, p, 1)))
	t.Logf("switched by %s; v0 (served until the switch) holds %d events, v1 (served now) %d", vs.SwitchedBy, s0, s1)
	if s1 < s0 {
		t.Errorf("replica Z switched the live pointer to v1 while v1 was %d events behind the version it replaced (its previous check was from the start of the rebuild)", s0-s1)
	}
}
