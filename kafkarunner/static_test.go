package kafkarunner_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/kafkarunner"
)

// Static membership (Config.InstanceID) against the real broker, with
// replicas as OS processes: a crash and a restart under the same ID, a
// stopped replica (zombie) whose ID a new process takes, and two live
// processes given the same ID by mistake.

// member is a group member as the broker describes it.
type member struct {
	id         string
	partitions []int32
}

// members describes f's group (named after the projection): members by
// instance ID ("" for dynamic members; the last one wins).
func (f *fixture) members(t *testing.T) map[string]member {
	t.Helper()
	var described kadm.DescribedGroups
	var err error
	for range 100 { // the group's coordinator may be loading
		if described, err = f.env.Admin(t).DescribeGroups(ctxFor(t), f.name); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]member{}
	for _, m := range described[f.name].Members {
		var parts []int32
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				parts = append(parts, tp.Partitions...)
			}
		}
		slices.Sort(parts)
		id := ""
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		out[id] = member{id: m.MemberID, partitions: parts}
	}
	return out
}

// waitMembers waits until the group's members satisfy ok.
func (f *fixture) waitMembers(t *testing.T, what string, ok func(map[string]member) bool) map[string]member {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := f.members(t)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group never had %s; members %+v", what, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startStatic starts a replica process with instance ID id and a session
// timeout far longer than the test needs: whatever moves in the group
// moves because of static membership, not because a session expired.
func startStatic(t *testing.T, f *fixture, out *os.File, id string) *exec.Cmd {
	t.Helper()
	cmd := startReplicaProcess(t, f, out, envInstanceID+"="+id, envSession+"=60s")
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd
}

// watchAssigned records every assignment rep has, until stop is closed.
func watchAssigned(rep *replica, stop <-chan struct{}) <-chan [][]int32 {
	seen := make(chan [][]int32, 1)
	go func() {
		var all [][]int32
		for {
			a := slices.Sorted(slices.Values(rep.r.Assigned()))
			if len(all) == 0 || !slices.Equal(all[len(all)-1], a) {
				all = append(all, a)
			}
			select {
			case <-stop:
				seen <- all
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return seen
}

// TestStaticMemberRestartedAfterSIGKILL: a replica process with instance ID
// "a" is SIGKILLed mid-run and restarted with the same ID. The restart
// takes the dead member's place (the group has two members, not three; the
// member ID under "a" changed), regains exactly its partitions, the other
// replica never gets them and keeps its own throughout, and every event is
// applied exactly once. The session timeout (60 s) outlasts the test's
// waits: nothing here waits for a session to expire.
func TestStaticMemberRestartedAfterSIGKILL(t *testing.T) {
	f := newFixture(t, 6)
	requireEnvServers(t, f)
	want := f.produce(t, 1000, 40, "process/t/")
	p := f.counter(t)
	a := startStatic(t, f, os.Stderr, "a")
	b := f.start(t, p, func(c *kafkarunner.Config) { c.InstanceID = "b"; c.SessionTimeout = time.Minute })
	before := f.waitMembers(t, "a and b with three partitions each", func(m map[string]member) bool {
		return len(m) == 2 && len(m["a"].partitions) == 3 && len(m["b"].partitions) == 3
	})
	waitApplied(t, f, p, 5_000)
	stop := make(chan struct{})
	seen := watchAssigned(b, stop)

	if err := a.Process.Kill(); err != nil { // SIGKILL: nothing flushed, committed or left
		t.Fatal(err)
	}
	_, _ = a.Process.Wait()
	startStatic(t, f, os.Stderr, "a")
	// The restart's join replaces the dead member under "a" (until then
	// the broker still lists the dead one; the counts may be complete
	// already if the dead replica applied everything before the kill).
	f.waitMembers(t, "a new member under a", func(m map[string]member) bool {
		return m["a"].id != "" && m["a"].id != before["a"].id
	})
	// Events after the restart: the new incarnation must apply its share.
	for id, n := range f.produce(t, 200, 5, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 3*time.Minute)
	close(stop)

	after := f.members(t)
	if len(after) != 2 || after["a"].id == before["a"].id || after["b"].id != before["b"].id {
		t.Errorf("members before the kill %+v, after the restart %+v: want the restart in the dead member's place", before, after)
	}
	if !slices.Equal(after["a"].partitions, before["a"].partitions) || !slices.Equal(after["b"].partitions, before["b"].partitions) {
		t.Errorf("assignment before the kill %+v, after the restart %+v: want it unchanged", before, after)
	}
	if got := <-seen; len(got) != 1 || !slices.Equal(got[0], before["b"].partitions) {
		t.Errorf("replica b's assignments while a restarted: %v; want only %v", got, before["b"].partitions)
	}
}

// TestZombieStaticMemberFenced: replica process "z" is SIGSTOPped; a new
// process joins with the same instance ID and takes z's partitions at once
// (the broker replaces the member, no session has to expire). Events
// produced meanwhile are applied by the new process. Then the zombie gets
// SIGCONT: the broker answers its heartbeat with FENCED_INSTANCE_ID, and
// its runner stops with ErrInstanceFenced (exit status 1, the reason on
// stderr) instead of rejoining, which would fence the new process in turn.
// Its partition workers had their Redis fences taken by the new process:
// the counts stay exact, and the new process keeps its membership and
// applies what comes after.
func TestZombieStaticMemberFenced(t *testing.T) {
	f := newFixture(t, 6)
	requireEnvServers(t, f)
	want := f.produce(t, 500, 20, "process/t/")
	p := f.counter(t)
	zombieOut, err := os.Create(filepath.Join(t.TempDir(), "zombie.log"))
	if err != nil {
		t.Fatal(err)
	}
	zombie := startStatic(t, f, zombieOut, "z")
	f.start(t, p, func(c *kafkarunner.Config) { c.InstanceID = "b"; c.SessionTimeout = time.Minute })
	f.waitMembers(t, "z and b with partitions", func(m map[string]member) bool {
		return len(m) == 2 && len(m["z"].partitions) > 0 && len(m["b"].partitions) > 0
	})
	waitApplied(t, f, p, 2_000)

	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := f.members(t)["z"]
	startStatic(t, f, os.Stderr, "z")
	taken := f.waitMembers(t, "a new member under z", func(m map[string]member) bool {
		return m["z"].id != "" && m["z"].id != stopped.id
	})
	for id, n := range f.produce(t, 100, 5, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 3*time.Minute)

	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- zombie.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("zombie exited with %v, want status 1", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the zombie did not stop within 2 minutes of SIGCONT")
	}
	out, _ := os.ReadFile(zombieOut.Name())
	if !strings.Contains(string(out), "another group member joined with this replica's instance ID") {
		t.Errorf("the zombie's output does not name the reason:\n%s", out)
	}
	for id, n := range f.produce(t, 100, 5, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 3*time.Minute)
	if now := f.members(t)["z"]; now.id != taken["z"].id {
		t.Errorf("member under z is %s, was %s: the zombie rejoined", now.id, taken["z"].id)
	}
}

// TestDuplicateInstanceIDStopsTheOlder: two live processes configured with
// the same instance ID by mistake. The second one's join fences the first,
// which stops with a clear error instead of rejoining (and fencing the
// second in turn, forever); the second carries on and the counts are exact.
func TestDuplicateInstanceIDStopsTheOlder(t *testing.T) {
	f := newFixture(t, 3)
	requireEnvServers(t, f)
	want := f.produce(t, 300, 10, "process/t/")
	p := f.counter(t)
	firstOut, err := os.Create(filepath.Join(t.TempDir(), "first.log"))
	if err != nil {
		t.Fatal(err)
	}
	first := startStatic(t, f, firstOut, "dup")
	waitApplied(t, f, p, 500)
	startStatic(t, f, os.Stderr, "dup")
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("first process exited with %v, want status 1", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the first process did not stop within 2 minutes of the second's join")
	}
	out, _ := os.ReadFile(firstOut.Name())
	if !strings.Contains(string(out), "two live replicas are configured with the same instance ID") {
		t.Errorf("the first process's output does not name the mistake:\n%s", out)
	}
	for id, n := range f.produce(t, 50, 5, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 3*time.Minute)
}

// TestStaticMemberLeavesOnShutdown: franz-go keeps a static member in the
// group when its client closes (classic: no LeaveGroup; KIP-848: a
// temporary leave), so that a restart regains the partitions; a replica
// stopped gracefully is usually not coming back under its ID (rollouts
// give pods new names) and would hold its partitions until its session
// expired (and keep the group from being empty, which a replay waits for).
// Once Run has returned, the group has no member left.
func TestStaticMemberLeavesOnShutdown(t *testing.T) {
	for _, kip848 := range []bool{false, true} {
		t.Run(map[bool]string{false: "classic", true: "kip848"}[kip848], func(t *testing.T) {
			f := newFixture(t, 3)
			want := f.produce(t, 50, 4, "process/t/")
			p := f.counter(t)
			rep := f.start(t, p, func(c *kafkarunner.Config) {
				c.InstanceID, c.SessionTimeout, c.ServerSideBalancer = "leaving", 5*time.Minute, kip848
			})
			f.waitCounts(t, p, want, time.Minute)
			rep.stop(t)
			adm := f.env.Admin(t)
			var left []string
			if kip848 {
				described, err := adm.DescribeConsumerGroups(ctxFor(t), f.name)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range described[f.name].Members {
					left = append(left, m.MemberID)
				}
			} else {
				for _, m := range f.members(t) {
					left = append(left, m.id)
				}
			}
			if len(left) > 0 {
				t.Errorf("members left in the group after a graceful stop: %v", left)
			}
		})
	}
}
