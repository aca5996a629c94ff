package kafkarunner_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Interleavings of a resume with faults, with replica processes (see
// replicaMain and envResume): the stream process/resume/x holds events
// 3, 4 (a "Latch" the replica blocks in) and 5 behind its parked event 2; a
// retry makes the replica apply 2 and 3 (one event per batch) and block in
// 4. Then the replica is killed, or frozen into a zombie.

func touch(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// blockInAResume parks the stream in a replica process, retries it and
// waits until the replica blocks in the resume, after applying 2 and 3.
func blockInAResume(t *testing.T, f *fixture, p *redischeckpoint.AtomicProjection, dir, id string, out *os.File, env ...string) *exec.Cmd {
	t.Helper()
	touch(t, dir, "hold")
	produceRaw(t, f.env.Client(t), f.store.Config().Topic,
		ev(id, 1, "x1", ""), ev(id, 2, "x2", "Poison"), ev(id, 3, "x3", ""), ev(id, 4, "x4", "Latch"), ev(id, 5, "x5", ""))
	proc := startReplicaProcess(t, f, out, append([]string{envResume + "=" + dir, envBatchSize + "=1", envSession + "=6s"}, env...)...)
	t.Cleanup(func() {
		_ = proc.Process.Signal(syscall.SIGCONT)
		_ = proc.Process.Kill()
		_, _ = proc.Process.Wait()
	})
	f.waitCounts(t, p, map[string]int64{id: 1}, time.Minute)
	waitFor(t, 30*time.Second, "the stream is parked", func() (bool, string) {
		parked, err := f.rstore.Parked(ctxFor(t), f.name)
		return err == nil && len(parked) == 1, fmt.Sprint(parked, err)
	})
	touch(t, dir, "fixed")
	if _, err := (kafkarunner.Resolver{Parked: f.rstore, Checkpoints: f.rstore}).Resolve(ctxFor(t), f.name,
		controlplane.Resolution{StreamID: id, Action: controlplane.ResolveRetry, By: "test", Reason: "fixed"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the replica blocks in the resume", func() (bool, string) {
		return exists(filepath.Join(dir, "blocked")), "not blocked"
	})
	if got := f.counts(t, p)[id]; got != 3 {
		t.Fatalf("%d events of %s applied when the resume blocked, want 3", got, id)
	}
	return proc
}

// nextOwnerCompletes starts another replica process and waits until it
// has completed the resume: every event of the stream applied once, the
// stream unparked.
func nextOwnerCompletes(t *testing.T, f *fixture, p *redischeckpoint.AtomicProjection, dir, id string) {
	t.Helper()
	next := startReplicaProcess(t, f, os.Stderr, envResume+"="+dir, envSession+"=6s")
	t.Cleanup(func() {
		_ = next.Process.Signal(syscall.SIGTERM)
		_, _ = next.Process.Wait()
	})
	want := map[string]int64{id: 5}
	f.waitCounts(t, p, want, 2*time.Minute)
	waitFor(t, 30*time.Second, "the stream is unparked", func() (bool, string) {
		parked, err := f.rstore.Parked(ctxFor(t), f.name)
		return err == nil && len(parked) == 0, fmt.Sprint(parked, err)
	})
	f.settle(t, p, want)
}

// resolutionsOf counts the recorded resolutions of a stream.
func resolutionsOf(t *testing.T, f *fixture, id string) int {
	t.Helper()
	list, err := f.rstore.Resolutions(ctxFor(t), f.name, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range list {
		if r.StreamID == id {
			n++
		}
	}
	return n
}

// TestReplicaKilledDuringAResume: SIGKILL between two applies of a
// resume. The next owner finds the stream still parked with the retry
// recorded, skips what was applied (by the cursor and the head's offset)
// and applies the rest: every event once.
func TestReplicaKilledDuringAResume(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	p := f.counter(t) // reads the read model
	dir := t.TempDir()
	const id = "process/resume/k"
	proc := blockInAResume(t, f, p, dir, id, os.Stderr)
	if err := proc.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_, _ = proc.Process.Wait()
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 1 || parked[0].Resolving == nil {
		t.Fatalf("after the crash: parked = %+v; want the stream parked with the retry recorded", parked)
	}
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil {
		t.Fatal(err)
	}
	nextOwnerCompletes(t, f, p, dir, id)
	if n := resolutionsOf(t, f, id); n != 1 {
		t.Errorf("%d resolutions recorded, want 1", n)
	}
}

// TestZombieDuringAResume: the replica is frozen (SIGSTOP, its Kafka
// connections cut) inside a resume past its session timeout; a live replica
// takes the partition and completes the resume; the zombie wakes up
// (SIGCONT) and finishes its apply: its writes and its unpark are fenced.
func TestZombieDuringAResume(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	p := f.counter(t)
	dir := t.TempDir()
	const id = "process/resume/z"
	logPath := filepath.Join(t.TempDir(), "zombie.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	proxy := testenv.StartProxy(t, f.env.Seeds[0])
	zombie := blockInAResume(t, f, p, dir, id, logFile, envKafkaProxy+"="+proxy.Addr)
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	proxy.Freeze()
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil {
		t.Fatal(err)
	}
	countAll, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	owner := f.start(t, countAll, fast)
	want := map[string]int64{id: 5}
	f.waitCounts(t, p, want, 2*time.Minute)
	waitUnparked(t, owner, id)

	touch(t, dir, "release")
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the zombie's write refused", func() (bool, string) {
		log, _ := os.ReadFile(logPath)
		return strings.Contains(string(log), "fenced"), "its log says nothing about fencing:\n" + string(log)
	})
	proxy.Thaw()
	f.settle(t, p, want)
	if n := resolutionsOf(t, f, id); n != 1 {
		t.Errorf("%d resolutions recorded, want 1 (the zombie unparked too?)", n)
	}
	if parked, _ := owner.r.Parked(ctxFor(t)); len(parked) != 0 {
		t.Errorf("parked after the zombie woke: %+v", parked)
	}
}

// TestReplicaStoppedDuringAResume: the replica is told to leave (SIGTERM:
// its partitions are revoked) while it applies a held event; it finishes
// that event and stops the resume there, leaving the stream parked with
// the retry recorded; the next owner applies the rest.
func TestReplicaStoppedDuringAResume(t *testing.T) {
	f := newFixture(t, 1)
	requireEnvServers(t, f)
	p := f.counter(t)
	dir := t.TempDir()
	const id = "process/resume/s"
	proc := blockInAResume(t, f, p, dir, id, os.Stderr)
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	touch(t, dir, "release")
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := f.counts(t, p)[id]; got != 4 {
		t.Errorf("%d events applied when the replica left, want 4 (it finishes the event it applies)", got)
	}
	if parked, _ := f.rstore.Parked(ctxFor(t), f.name); len(parked) != 1 || parked[0].Resolving == nil {
		t.Fatalf("after the replica left: parked = %+v; want the stream parked with the retry recorded", parked)
	}
	nextOwnerCompletes(t, f, p, dir, id)
}
