package kafkarunner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Versioned read models: the interleavings of a rebuild beside the live
// version, and which test covers each.
//
//   - A replica SIGKILLed while it builds the new version: the new
//     version's group rebalances like any other (billing's
//     TestRebuildBesideTheLiveVersion kills a worker process mid-rebuild).
//   - Two replicas switch at once: the switch is one optimistic
//     transaction on the registry; the second finds no rebuild to switch
//     (TestVersionsRegistry).
//   - A replica of the replaced version frozen across the switch and the
//     deletion (a zombie) wakes up with a batch to write: its writes and
//     its fences are refused because the version is closed; nothing of it
//     reappears in Redis (TestRebuildZombieOfTheReplacedVersion).
//   - An abort while the rebuild runs: the new version is closed, its keys
//     and group deleted; the live version is untouched
//     (TestRebuildAbortLeavesTheLiveVersion).
//   - A stream parked in the new version but not in the live one: the
//     rebuild does not switch and says why; once resolved in the new
//     version, it switches (TestRebuildWaitsForStreamsParkedInIt).

// versioned starts a VersionedRunner of p's projection in this process.
func (f *fixture) versioned(t *testing.T, p *redischeckpoint.AtomicProjection) (*kafkarunner.VersionedRunner, func()) {
	t.Helper()
	vr, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
		Name: p.Name(),
		NewProjection: func(name string) (framework.Projection, error) {
			return p.Version(name)
		},
		Refresh: 200 * time.Millisecond,
		Runner: kafkarunner.Config{Seeds: f.env.Seeds, Topic: f.store.Config().Topic, Checkpoints: f.rstore, Events: f.store,
			FlushInterval: 200 * time.Millisecond, ParkedRefresh: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond,
			Retry: kafkarunner.RetryPolicy{Attempts: 2, Initial: 10 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vr.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("versioned runner: %v", err)
		}
	}
	t.Cleanup(stop)
	return vr, stop
}

// version returns p's version v.
func version(t *testing.T, p *redischeckpoint.AtomicProjection, v uint64) *redischeckpoint.AtomicProjection {
	t.Helper()
	pv, err := p.Version(framework.VersionedName(p.Name(), v))
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

// waitVersions waits until the registry satisfies cond.
func (f *fixture) waitVersions(t *testing.T, what string, timeout time.Duration, cond func(controlplane.Versions) bool) controlplane.Versions {
	t.Helper()
	var vs controlplane.Versions
	waitFor(t, timeout, what, func() (bool, string) {
		var err error
		vs, err = f.rstore.Versions(ctxFor(t), f.name)
		return err == nil && cond(vs), fmt.Sprintf("%+v %v", vs, err)
	})
	return vs
}

// keysOf returns the keys of f's projection (without its namespace and
// hash tag) for which keep is true, leaving out the registry and the
// tombstones of dropped versions.
func (f *fixture) keysOf(t *testing.T, keep func(string) bool) []string {
	t.Helper()
	base := f.ns + ":{" + f.name + "}:"
	var out []string
	iter := f.rdb.Scan(ctxFor(t), 0, base+"*", 1000).Iterator()
	for iter.Next(ctxFor(t)) {
		k := strings.TrimPrefix(iter.Val(), base)
		if k == "versions" || !keep(k) {
			continue
		}
		if k == "meta" || strings.HasSuffix(k, ":meta") {
			h, _ := f.rdb.HGetAll(ctxFor(t), iter.Val()).Result()
			if _, ok := h["dropped_at"]; ok && len(h) == 2 {
				continue // a dropped version's tombstone
			}
		}
		out = append(out, k)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func inVersion1(k string) bool  { return strings.HasPrefix(k, "v1:") }
func outVersion1(k string) bool { return !inVersion1(k) }

// waitGroupGone waits until Kafka has deleted the consumer group.
func (f *fixture) waitGroupGone(t *testing.T, group string) {
	t.Helper()
	waitFor(t, 30*time.Second, "consumer group "+group+" deleted", func() (bool, string) {
		described, err := f.env.Admin(t).DescribeGroups(ctxFor(t), group)
		if err != nil {
			return false, err.Error()
		}
		g := described[group]
		return g.State == "Dead" || errors.Is(g.Err, kerr.GroupIDNotFound), fmt.Sprintf("state %s err %v", g.State, g.Err)
	})
}

func TestVersionsRegistry(t *testing.T) {
	f := newFixture(t, 1)
	ctx := ctxFor(t)
	p := f.counter(t)
	if live, err := f.rstore.Live(ctx, f.name); err != nil || live != f.name {
		t.Fatalf("live before any rebuild = %q, %v", live, err)
	}
	r, err := f.rstore.StartRebuild(ctx, f.name, controlplane.Rebuild{By: "test", Grace: time.Hour})
	if err != nil || r.Version != 1 {
		t.Fatalf("StartRebuild = %+v, %v", r, err)
	}
	if _, err := f.rstore.StartRebuild(ctx, f.name, controlplane.Rebuild{By: "test"}); !errors.Is(err, redischeckpoint.ErrRebuildInProgress) {
		t.Fatalf("a second rebuild = %v, want ErrRebuildInProgress", err)
	}
	// Two replicas switch at once: one does.
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := f.rstore.SwitchLive(ctx, f.name, 1, "test"); errs <- err }()
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), redischeckpoint.ErrNoRebuild) {
		t.Fatalf("two switches at once = %v, %v; want one to switch and the other to find no rebuild", e1, e2)
	}
	vs, err := f.rstore.Versions(ctx, f.name)
	if err != nil || vs.Live != 1 || vs.Building != nil || len(vs.Retiring) != 1 || vs.Retiring[0].Version != 0 || len(vs.History) != 1 {
		t.Fatalf("versions after the switch = %+v, %v", vs, err)
	}
	if live, err := f.rstore.Live(ctx, f.name); err != nil || live != f.name+"@v1" {
		t.Fatalf("live after the switch = %q, %v", live, err)
	}
	if lp, err := p.Live(ctx); err != nil || lp.Name() != f.name+"@v1" || lp.Key("x") != f.ns+":{"+f.name+"}:v1:rm:x" {
		t.Fatalf("live projection = %v, %v", lp.Key("x"), err)
	}
	// The replaced version takes no fence and no write any more.
	if _, err := f.rstore.AcquireFence(ctx, f.name, 0); !errors.Is(err, controlplane.ErrVersionClosed) {
		t.Errorf("a fence of the replaced version = %v, want ErrVersionClosed", err)
	}
	// A new rebuild never reuses a number.
	if r, err := f.rstore.StartRebuild(ctx, f.name, controlplane.Rebuild{By: "test"}); err != nil || r.Version != 2 {
		t.Fatalf("the next rebuild = %+v, %v", r, err)
	}
	if _, err := f.rstore.AbortRebuild(ctx, f.name, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rstore.AcquireFence(ctx, f.name+"@v2", 0); !errors.Is(err, controlplane.ErrVersionClosed) {
		t.Errorf("a fence of the aborted version = %v, want ErrVersionClosed", err)
	}
	if err := f.rstore.DropVersion(ctx, f.name, 1); err == nil {
		t.Error("the live version was dropped")
	}
}

// TestRebuildAbortLeavesTheLiveVersion aborts a rebuild half way: the new
// version's keys and group go, the live version is exact and untouched.
func TestRebuildAbortLeavesTheLiveVersion(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 200, 20, "process/t/")
	p := f.counter(t)
	f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test"}); err != nil {
		t.Fatal(err)
	}
	v1 := version(t, p, 1)
	waitFor(t, time.Minute, "the new version applies events", func() (bool, string) {
		n := len(f.counts(t, v1))
		return n > 0, fmt.Sprint(n, " streams")
	})
	if _, err := f.rstore.AbortRebuild(ctxFor(t), f.name, "test"); err != nil {
		t.Fatal(err)
	}
	f.waitVersions(t, "the aborted version is dropped", time.Minute, func(vs controlplane.Versions) bool {
		return vs.Live == 0 && vs.Building == nil && len(vs.Retiring) == 0
	})
	f.waitGroupGone(t, framework.VersionGroup(f.name, 1))
	if left := f.keysOf(t, inVersion1); len(left) > 0 {
		t.Errorf("keys of the aborted version left: %v", left)
	}
	more := f.produce(t, 50, 2, "process/u/")
	for id, n := range more {
		want[id] = n
	}
	f.waitCounts(t, p, want, time.Minute)
	if got := f.counts(t, v1); len(got) != 0 {
		t.Errorf("the aborted version's read model still holds %d streams", len(got))
	}
}

// TestRebuildWaitsForStreamsParkedInIt: a stream that parks only in the new
// version keeps the rebuild from switching, with the reason recorded; a
// skip in the new version lets it switch.
func TestRebuildWaitsForStreamsParkedInIt(t *testing.T) {
	f := newFixture(t, 2)
	want := f.produce(t, 50, 5, "process/t/")
	produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev("process/t/odd", 1, "o1", ""), ev("process/t/odd", 2, "o2", "NewBug"), ev("process/t/odd", 3, "o3", ""))
	want["process/t/odd"] = 3
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "NewBug" && strings.Contains(w.Key(""), ":v1:") {
			return fmt.Errorf("the new version's code fails on %s", e)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.versioned(t, p)
	f.waitCounts(t, p, want, 2*time.Minute)
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test"}); err != nil {
		t.Fatal(err)
	}
	vs := f.waitVersions(t, "the rebuild catches up and waits", time.Minute, func(vs controlplane.Versions) bool {
		return vs.Building != nil && vs.Building.Blocked != ""
	})
	if b := vs.Building.Blocked; !strings.Contains(b, "process/t/odd at sequence 2") || vs.Live != 0 {
		t.Fatalf("blocked = %q (live v%d), want the parked stream named", b, vs.Live)
	}
	time.Sleep(time.Second)
	if vs, _ := f.rstore.Versions(ctxFor(t), f.name); vs.Live != 0 {
		t.Fatal("switched to a version with a stream parked in it")
	}
	if _, err := (kafkarunner.Resolver{Parked: f.rstore, Checkpoints: f.rstore}).Resolve(ctxFor(t), f.name+"@v1",
		controlplane.Resolution{StreamID: "process/t/odd", Action: controlplane.ResolveSkip, By: "test", Reason: "known bug of the new code"}); err != nil {
		t.Fatal(err)
	}
	f.waitVersions(t, "the rebuild switches", time.Minute, func(vs controlplane.Versions) bool { return vs.Live == 1 })
	want["process/t/odd"] = 2 // event 2 skipped in the new version
	f.waitCounts(t, version(t, p, 1), want, time.Minute)
}

// TestRebuildZombieOfTheReplacedVersion freezes a replica process
// (SIGSTOP) while it applies an event of the live version, lets another
// replica rebuild, switch and drop the old version, then wakes the zombie
// (SIGCONT) with its event still to write and a registry it reads only
// once a minute: nothing of the replaced version reappears in Redis, and
// the new version is exact.
func TestRebuildZombieOfTheReplacedVersion(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	dir := t.TempDir()
	want := f.produce(t, 20, 5, "process/t/")
	p := f.counter(t)
	env := []string{envResume + "=" + dir, envVersioned + "=1", envSession + "=6s"}
	// The zombie reads the registry rarely: it learns late that its
	// version was replaced, and keeps trying to write to it meanwhile.
	zombie := startReplicaProcess(t, f, os.Stderr, append(env, envVersionsRefresh+"=1m")...)
	t.Cleanup(func() {
		_ = zombie.Process.Signal(syscall.SIGCONT)
		_ = zombie.Process.Kill()
		_, _ = zombie.Process.Wait()
	})
	f.waitCounts(t, p, want, 2*time.Minute)
	touch(t, dir, "hold")
	produceRaw(t, f.env.Client(t), f.store.Config().Topic, ev("process/t/latch", 1, "l1", "Latch"))
	waitFor(t, time.Minute, "the replica blocks applying the latch event", func() (bool, string) {
		return exists(filepath.Join(dir, "blocked")), "not blocked"
	})
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil { // the next replica does not block
		t.Fatal(err)
	}
	want["process/t/latch"] = 1
	other := startReplicaProcess(t, f, os.Stderr, env...)
	t.Cleanup(func() {
		_ = other.Process.Signal(syscall.SIGTERM)
		_, _ = other.Process.Wait()
	})
	f.waitCounts(t, p, want, 2*time.Minute) // the other replica took the partition over
	if _, err := f.rstore.StartRebuild(ctxFor(t), f.name, controlplane.Rebuild{By: "test", Grace: 0}); err != nil {
		t.Fatal(err)
	}
	f.waitVersions(t, "switched and the old version dropped", 2*time.Minute, func(vs controlplane.Versions) bool {
		return vs.Live == 1 && len(vs.Retiring) == 0
	})
	f.waitGroupGone(t, f.name)
	if left := f.keysOf(t, outVersion1); len(left) > 0 {
		t.Fatalf("keys of version 0 left after the drop: %v", left)
	}
	// The zombie wakes up inside its apply of the latch event, with a
	// fence of version 0 it still believes in.
	touch(t, dir, "release")
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	more := f.produce(t, 10, 1, "process/u/")
	for id, n := range more {
		want[id] = n
	}
	f.waitCounts(t, version(t, p, 1), want, time.Minute)
	time.Sleep(3 * time.Second) // the zombie's refused writes and its retries
	if left := f.keysOf(t, outVersion1); len(left) > 0 {
		t.Errorf("the zombie of version 0 wrote after its version was dropped: %v", left)
	}
	f.waitCounts(t, version(t, p, 1), want, 10*time.Second)
}
