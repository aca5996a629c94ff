package kafkarunner_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// versionedReplica starts a VersionedRunner named replica whose versions
// come from newProjection, and stops it at the end of the test.
func (f *fixture) versionedReplica(t *testing.T, name, replica string, newProjection func(string) (framework.Projection, error)) *kafkarunner.VersionedRunner {
	t.Helper()
	vr, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
		Name:          name,
		NewProjection: newProjection,
		Refresh:       200 * time.Millisecond,
		Runner: kafkarunner.Config{Seeds: f.env.Seeds, Topic: f.store.Config().Topic, Checkpoints: f.rstore, Events: f.store, ReplicaID: replica,
			FlushInterval: 200 * time.Millisecond, ParkedRefresh: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond,
			Retry: kafkarunner.RetryPolicy{Attempts: 2, Initial: 10 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("versioned runner %s: %v", replica, err)
		}
	})
	return vr
}

// TestRebuildSwitchesWhileTheLiveVersionKeepsApplying: under a steady
// write load the live version may have applied something more at every
// switch attempt (here, deterministically: right before each attempt the
// live version applies an event the topic gets a moment later, as long as
// it is not held). The old runner then refused every switch for ever (in
// CI a rebuild saw no switch in 2 minutes). The replica must hold the
// live version's writes for a moment and switch then; the model served
// must not go back at the switch.
func TestRebuildSwitchesWhileTheLiveVersionKeepsApplying(t *testing.T) {
	t.Cleanup(kafkarunner.SetFreezeTimes(5*time.Second, 2*time.Second, 0)) // after the runners stop
	f := newFixture(t, 2)
	p := f.counter(t)
	want := f.produce(t, 20, 2, "process/t/")
	vr, _ := f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	var attempts, applied, refused atomic.Int64
	cl := f.env.Client(t)
	topic := f.store.Config().Topic
	defer kafkarunner.SetBeforeSwitch(func() {
		attempts.Add(1)
		live := vr.Live()
		if live == nil || !live.HeldUntil().IsZero() {
			refused.Add(1) // held: the live version applies nothing
			return
		}
		n := applied.Add(1)
		id := fmt.Sprintf("process/late/%04d", n)
		ctx := ctxFor(t)
		cursors := f.ns + ":{" + f.name + "}:cursors"
		if err := f.rdb.HSet(ctx, cursors, id, 1).Err(); err != nil {
			t.Error(err)
		}
		if err := f.rdb.HIncrBy(ctx, p.Key("counts"), id, 1).Err(); err != nil {
			t.Error(err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			produceRaw(t, cl, topic, ev(id, 1, id, ""))
		}()
	})()
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	vs := f.waitVersions(t, "the switch to v1", 90*time.Second, func(vs controlplane.Versions) bool { return vs.Live == 1 })
	t.Logf("switched after %d attempt(s): %d with the live version applying right before, %d while it was held", attempts.Load(), applied.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Errorf("switched without holding the live version: the hook never found it held (%+v)", vs)
	}
	// Every late event the live version applied is in the new version.
	for i := int64(1); i <= applied.Load(); i++ {
		want[fmt.Sprintf("process/late/%04d", i)] = 1
	}
	f.waitCounts(t, version(t, p, 1), want, time.Minute)
	waitFor(t, 10*time.Second, "the replica running v1 as its live version", func() (bool, string) {
		return vr.LiveName() == framework.VersionedName(f.name, 1), vr.LiveName()
	})
	if h := vr.Live().HeldUntil(); !h.IsZero() {
		t.Errorf("the new live version is held until %v", h)
	}
}

// TestFreezeLeftInTheRegistry: a freeze is state in the version registry,
// not in the replica that set it. What a replica that dies while it holds
// the live version leaves behind must not stop the live version for
// longer than the freeze: (1) a freeze ends by itself at FrozenUntil;
// (2) a FrozenUntil far ahead (a replica with a clock far off) is capped by
// every replica's own clock; (3) aborting the rebuild ends a freeze at
// once. Two replicas; the rebuild cannot switch by itself (the new version
// parks a stream the live one applied).
func TestFreezeLeftInTheRegistry(t *testing.T) {
	t.Cleanup(kafkarunner.SetFreezeTimes(0, time.Hour, 20*time.Second)) // after the runners stop
	f := newFixture(t, 2)
	p := f.counter(t)
	stuck, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Stuck" {
			return fmt.Errorf("the new version cannot apply %s", e)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	newProjection := func(name string) (framework.Projection, error) {
		if _, v := framework.SplitVersionedName(name); v > 0 {
			return stuck.Version(name)
		}
		return p.Version(name)
	}
	want := f.produce(t, 10, 2, "process/t/")
	produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev("process/stuck/1", 1, "stuck-1", "Stuck"))
	want["process/stuck/1"] = 1
	replicas := []*kafkarunner.VersionedRunner{
		f.versionedReplica(t, f.name, "replica-a", newProjection),
		f.versionedReplica(t, f.name, "replica-b", newProjection),
	}
	f.waitCounts(t, p, want, 2*time.Minute)
	held := func() (n int, detail string) {
		for _, vr := range replicas {
			live := vr.Live()
			if live != nil && !live.HeldUntil().IsZero() {
				n++
			}
			if live != nil {
				detail += fmt.Sprintf("%s held until %v; ", vr.ReplicaID(), live.HeldUntil())
			}
		}
		return n, detail
	}
	rebuild := func() uint64 {
		r, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		f.waitVersions(t, "the rebuild blocked by the stream parked in the new version", time.Minute, func(vs controlplane.Versions) bool {
			return vs.Building != nil && vs.Building.Blocked != ""
		})
		return r.Version
	}
	ver := rebuild()
	next := 0
	more := func(k int) {
		for i := range k {
			id := fmt.Sprintf("process/more/%04d", next+i)
			produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev(id, 1, id, ""))
			want[id] = 1
		}
		next += k
	}

	// (1) A freeze ends by itself; while it lasts, nothing is applied.
	until := time.Now().Add(8 * time.Second)
	if err := f.rstore.FreezeLive(ctxFor(t), f.name, ver, until, "a replica that died"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "both replicas holding the live version", func() (bool, string) { n, d := held(); return n == 2, d })
	more(5)
	time.Sleep(1500 * time.Millisecond) // unheld, the runners apply them in milliseconds
	if checked := time.Now(); checked.Before(until.Add(-time.Second)) {
		for id, n := range f.counts(t, p) {
			if strings.HasPrefix(id, "process/more/") {
				t.Errorf("the live version applied %s (%d) while it was held (checked %v before the freeze ended)", id, n, until.Sub(checked))
			}
		}
	} else {
		t.Logf("too slow to check the hold itself (%v after the freeze ended)", time.Since(until))
	}
	f.waitCounts(t, p, want, time.Minute)
	if n, d := held(); n != 0 {
		t.Errorf("replicas still held after the freeze ended: %s", d)
	}

	// (2) A freeze an hour ahead is capped by each replica's own clock.
	if err := f.rstore.FreezeLive(ctxFor(t), f.name, ver, time.Now().Add(time.Hour), "a replica with a clock an hour ahead"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "both replicas holding the live version", func() (bool, string) { n, d := held(); return n == 2, d })
	for _, vr := range replicas {
		if h := vr.Live().HeldUntil(); h.After(time.Now().Add(21 * time.Second)) {
			t.Errorf("%s holds the live version until %v: more than its own cap of 20s", vr.ReplicaID(), h)
		}
	}

	// (3) Aborting the rebuild ends the freeze at once.
	more(5)
	if _, err := f.rstore.AbortRebuild(ctxFor(t), f.name, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "no replica holding the live version after the abort", func() (bool, string) { n, d := held(); return n == 0, d })
	f.waitCounts(t, p, want, time.Minute)
}
