package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
)

// startVersioned runs a replica of every version of the fixture's
// projection (a kafkarunner.VersionedRunner) until stopped.
func (f *fixture) startVersioned() (stop func()) {
	f.t.Helper()
	p := f.projection()
	vr, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
		Name:          f.name,
		NewProjection: func(name string) (framework.Projection, error) { return p.Version(name) },
		Refresh:       200 * time.Millisecond,
		Runner: kafkarunner.Config{Seeds: f.kafka.Seeds, Topic: f.store.Config().Topic, Checkpoints: f.rstore, Events: f.store,
			FlushInterval: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vr.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("versioned runner: %v", err)
			}
		}
	}
	f.t.Cleanup(stop)
	return stop
}

// countsOf reads the counts of version v.
func (f *fixture) countsOf(v uint64) map[string]int64 {
	f.t.Helper()
	pv, err := f.projection().Version(framework.VersionedName(f.name, v))
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := f.redis.Client.HGetAll(context.Background(), pv.Key("counts")).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int64{}
	for k, val := range raw {
		var n int64
		fmt.Sscan(val, &n)
		out[k] = n
	}
	return out
}

func (f *fixture) waitVersions(what string, cond func(controlplane.Versions) bool) controlplane.Versions {
	f.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		vs, err := f.rstore.Versions(context.Background(), f.name)
		if err == nil && cond(vs) {
			return vs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: versions %+v, %v", what, vs, err)
		}
	}
}

// TestRebuildCommand drives projectorctl rebuild: plan, confirmation,
// --wait until the switch, --status, --keep and --drop, --abort, and the
// refusals (a rebuild in progress, a replay during a rebuild, a version
// given instead of a name).
func TestRebuildCommand(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(20, 3)
	stop := f.startVersioned()
	f.waitCounts(time.Minute)

	code, out, errOut := f.ctl("", "rebuild", f.name, "--dry-run")
	if code != exitOK || !strings.Contains(out, "new version:  "+f.name+"@v1") || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("rebuild --dry-run = %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := f.ctl("no\n", "rebuild", f.name); code != exitRefused || !strings.Contains(out, "Type yes") {
		t.Fatalf("rebuild not confirmed = %d\n%s", code, out)
	}
	if code, _, errOut := f.ctl("", "rebuild", f.name+"@v1"); code != exitUsage || !strings.Contains(errOut, "not a version") {
		t.Fatalf("rebuild of a version = %d %s", code, errOut)
	}
	if vs, _ := f.rstore.Versions(context.Background(), f.name); vs.Last != 0 {
		t.Fatalf("a dry run or an unconfirmed rebuild changed the registry: %+v", vs)
	}

	code, out, errOut = f.ctl("", "rebuild", f.name, "--yes", "--wait", "--grace", "1s", "--reason", "new code")
	if code != exitOK || !strings.Contains(out, "switched: "+f.name+"@v1 is live") {
		t.Fatalf("rebuild --wait = %d\n%s%s", code, out, errOut)
	}
	f.mu.Lock()
	want := maps.Clone(f.produced)
	f.mu.Unlock()
	if got := f.countsOf(1); !maps.Equal(got, want) {
		t.Errorf("version 1 after the switch = %v, want %v", got, want)
	}
	f.waitVersions("version 0 dropped after its grace", func(vs controlplane.Versions) bool { return vs.Live == 1 && len(vs.Retiring) == 0 })
	if got := f.countsOf(0); len(got) != 0 {
		t.Errorf("version 0's read model left after its grace: %d streams", len(got))
	}
	code, out, _ = f.ctl("", "status", f.name)
	if code != exitOK || !strings.Contains(out, "live version  "+f.name+"@v1") || !strings.Contains(out, "group         "+f.name+"@v1") {
		t.Errorf("status after the rebuild = %d\n%s", code, out)
	}

	// --keep: version 1 stays until --drop.
	if code, out, errOut := f.ctl("", "rebuild", f.name, "--yes", "--wait", "--keep"); code != exitOK || !strings.Contains(out, "is kept") {
		t.Fatalf("rebuild --keep = %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Second)
	if vs, _ := f.rstore.Versions(context.Background(), f.name); len(vs.Retiring) != 1 || !vs.Retiring[0].Keep || len(f.countsOf(1)) == 0 {
		t.Fatalf("the kept version = %+v", vs.Retiring)
	}
	if code, out, _ := f.ctl("", "rebuild", f.name, "--drop", "1"); code != exitOK || !strings.Contains(out, "will be deleted") {
		t.Fatalf("rebuild --drop 1 = %d %s", code, out)
	}
	f.waitVersions("the kept version dropped", func(vs controlplane.Versions) bool { return len(vs.Retiring) == 0 })
	if code, _, _ := f.ctl("", "rebuild", f.name, "--drop", "2"); code != exitRefused {
		t.Errorf("--drop of the live version = %d, want refused", code)
	}

	// Without replicas the rebuild stays in progress: refusals, status,
	// abort.
	stop()
	if code, out, errOut := f.ctl("", "rebuild", f.name, "--yes"); code != exitOK || !strings.Contains(out, "started: "+f.name+"@v3") {
		t.Fatalf("rebuild = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := f.ctl("", "rebuild", f.name, "--yes"); code != exitRefused || !strings.Contains(errOut, "in progress") {
		t.Errorf("a second rebuild = %d %s", code, errOut)
	}
	if code, _, errOut := f.ctl("", "replay", f.name, "--yes"); code != exitRefused || !strings.Contains(errOut, "rebuild of "+f.name+" to v3 is in progress") {
		t.Errorf("a replay during a rebuild = %d %s", code, errOut)
	}
	if code, out, _ := f.ctl("", "rebuild", f.name, "--status"); code != exitOK || !strings.Contains(out, "rebuilding "+f.name+"@v3") ||
		!strings.Contains(out, "live version "+f.name+"@v2") {
		t.Errorf("rebuild --status = %d\n%s", code, out)
	}
	if code, out, _ := f.ctl("", "rebuild", f.name, "--abort"); code != exitOK || !strings.Contains(out, "aborted") {
		t.Errorf("rebuild --abort = %d %s", code, out)
	}
	if code, _, _ := f.ctl("", "rebuild", f.name, "--abort"); code != exitRefused {
		t.Errorf("a second --abort = %d, want refused", code)
	}
	vs := f.waitVersions("the abort recorded", func(vs controlplane.Versions) bool { return vs.Building == nil })
	if vs.Live != 2 || len(vs.History) != 3 || !strings.HasPrefix(vs.History[0].Outcome, "aborted by tester") {
		t.Errorf("versions after the abort = %+v", vs)
	}
}
