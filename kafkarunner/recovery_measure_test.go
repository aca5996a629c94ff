package kafkarunner_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/projector-dev/projector/framework"
)

// Recovery measurements: not part of the normal suite (they take minutes
// and only report). Run them against the servers of scripts/infra.sh:
//
//	PROJECTOR_MEASURE_RECOVERY=1 go test -count=1 -v -run 'TestMeasure' ./kafkarunner
//
// or scripts/measure-recovery.sh. Replicas are OS processes (this test
// binary, see replicaMain) and faults are real SIGKILLs.

const envMeasure = "PROJECTOR_MEASURE_RECOVERY"

func requireMeasure(t *testing.T) {
	t.Helper()
	if os.Getenv(envMeasure) != "1" {
		t.Skip("a measurement: set " + envMeasure + "=1")
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// recoverySetting is one membership configuration measured.
type recoverySetting struct {
	name string
	env  []string // of every replica process
	// static gives each replica its own instance ID, kept by its restart.
	static bool
}

var recoverySettings = []recoverySetting{
	// Kafka's and franz-go's defaults: 45 s session, 3 s heartbeats.
	{name: "default-45s", env: []string{envSession + "=45s", envHeartbeat + "=3s"}},
	// This version's default: 6 s session, 1 s heartbeats.
	{name: "session-6s"},
	{name: "static-6s", static: true},
	{name: "kip848", env: []string{envGroupProtocol + "=consumer"}},
	{name: "kip848-static", env: []string{envGroupProtocol + "=consumer"}, static: true},
}

// trickle appends one event at a time to random streams until ctx is
// done, so that every partition keeps getting records.
func trickle(ctx context.Context, t *testing.T, f *fixture, streams int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				id := fmt.Sprintf("process/live/%05d", rand.IntN(streams))
				if _, err := f.store.Append(ctx, id, framework.AnyVersion, []framework.EventData{{Type: "Counted"}}); err != nil && ctx.Err() == nil {
					t.Errorf("append: %v", err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return &wg
}

// progressOf reads every partition's progress (the offset the stored state
// covers, raised by each flush before the commit); -1 for none.
func (f *fixture) progressOf(t *testing.T, partitions int32) []int64 {
	t.Helper()
	out := make([]int64, partitions)
	for i := range partitions {
		pp, err := f.rstore.Progress(context.Background(), f.name, i)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = -1
		if pp.Recorded {
			out[i] = pp.Next
		}
	}
	return out
}

// replicaSet is the replica processes of one run.
type replicaSet struct {
	t     *testing.T
	f     *fixture
	env   []string
	procs []*exec.Cmd
	ids   []string
}

func startReplicaSet(t *testing.T, f *fixture, n int, s recoverySetting) *replicaSet {
	rs := &replicaSet{t: t, f: f, env: s.env}
	for i := range n {
		id := ""
		if s.static {
			id = fmt.Sprintf("%s-r%d", f.name, i)
		}
		rs.ids = append(rs.ids, id)
		rs.procs = append(rs.procs, rs.start(i))
	}
	return rs
}

func (rs *replicaSet) start(i int) *exec.Cmd {
	env := slices.Clone(rs.env)
	if rs.ids[i] != "" {
		env = append(env, envInstanceID+"="+rs.ids[i])
	}
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	return startReplicaProcess(rs.t, rs.f, devnull, env...)
}

// crash SIGKILLs replica i and starts it again at once, as a kubelet
// restarts a crashed container (same pod name, so the same instance ID).
func (rs *replicaSet) crash(i int) {
	_ = rs.procs[i].Process.Kill()
	_, _ = rs.procs[i].Process.Wait()
	rs.procs[i] = rs.start(i)
}

func (rs *replicaSet) stop() {
	for _, c := range rs.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range rs.procs {
		done := make(chan struct{})
		go func() { _, _ = c.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(45 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
}

// TestMeasureRecoveryAfterSIGKILL: two replica processes consume a topic
// of 6 partitions that gets new records all the time; one is SIGKILLed and
// started again at once. Reported: the seconds from the kill until every
// partition's stored progress moved again (the dead replica's partitions
// are the slow ones), per membership setting (all, or those named in
// PROJECTOR_MEASURE_SETTINGS), PROJECTOR_MEASURE_ROUNDS rounds (default
// 2), settings interleaved.
func TestMeasureRecoveryAfterSIGKILL(t *testing.T) {
	requireMeasure(t)
	const partitions = 6
	base := newFixture(t, partitions)
	requireEnvServers(t, base)
	ctx, cancel := context.WithCancel(context.Background())
	producing := trickle(ctx, t, base, 600)
	defer func() { cancel(); producing.Wait() }()

	settings := recoverySettings
	if names := os.Getenv("PROJECTOR_MEASURE_SETTINGS"); names != "" {
		settings = measuredSettings(t, names)
	}
	results := map[string][]float64{}
	for round := range envInt("PROJECTOR_MEASURE_ROUNDS", 2) {
		for _, s := range settings {
			f := *base
			f.name = uniqueName("recovery")
			rs := startReplicaSet(t, &f, 2, s)
			// Settled: both replicas joined and every partition moves.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				before := f.progressOf(t, partitions)
				time.Sleep(1500 * time.Millisecond)
				after := f.progressOf(t, partitions)
				moved := 0
				for i := range after {
					if before[i] >= 0 && after[i] > before[i] {
						moved++
					}
				}
				if moved == partitions {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: only %d of %d partitions move 2 minutes after the start", s.name, moved, partitions)
				}
			}
			time.Sleep(3 * time.Second) // let a rebalance after the second join finish
			at := f.progressOf(t, partitions)
			killed := time.Now()
			rs.crash(0)
			back := make([]time.Duration, partitions)
			for {
				now := f.progressOf(t, partitions)
				waiting := 0
				for i := range now {
					if back[i] == 0 && now[i] > at[i] {
						back[i] = time.Since(killed)
					}
					if back[i] == 0 {
						waiting++
					}
				}
				if waiting == 0 {
					break
				}
				if time.Since(killed) > 3*time.Minute {
					t.Fatalf("%s: %d partitions not processed 3 minutes after the kill", s.name, waiting)
				}
				time.Sleep(50 * time.Millisecond)
			}
			worst := slices.Max(back)
			results[s.name] = append(results[s.name], worst.Seconds())
			t.Logf("round %d %-14s partitions processed again after %.2fs (per partition %v)", round+1, s.name, worst.Seconds(), rounded(back))
			rs.stop()
		}
	}
	for _, s := range settings {
		t.Logf("%-14s seconds until every partition is processed again: %v", s.name, results[s.name])
	}
}

// measuredSettings returns the recoverySettings named, comma-separated.
func measuredSettings(t *testing.T, names string) []recoverySetting {
	t.Helper()
	var out []recoverySetting
	for name := range strings.SplitSeq(names, ",") {
		i := slices.IndexFunc(recoverySettings, func(s recoverySetting) bool { return s.name == name })
		if i < 0 {
			t.Fatalf("no setting %q", name)
		}
		out = append(out, recoverySettings[i])
	}
	return out
}

func rounded(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return out
}

// TestMeasureThroughputUnderKills: three replica processes consume a
// backlog of PROJECTOR_MEASURE_EVENTS events (default 300,000; 3,000
// streams) in a new group, once without faults and once per membership
// setting with a replica SIGKILLed (and started again at once) every 5 s,
// interleaved, for PROJECTOR_MEASURE_ROUNDS rounds. Reported: each run's
// rate and the ratio of a run under kills to the no-fault run of the same
// round. Every run must end with every stream counted exactly.
// PROJECTOR_MEASURE_SETTINGS picks the settings under kills
// (comma-separated recoverySettings names; default static-6s); the
// no-fault runs use the first.
func TestMeasureThroughputUnderKills(t *testing.T) {
	requireMeasure(t)
	settings := measuredSettings(t, cmp.Or(os.Getenv("PROJECTOR_MEASURE_SETTINGS"), "static-6s"))
	base := newFixture(t, 6)
	requireEnvServers(t, base)
	events := envInt("PROJECTOR_MEASURE_EVENTS", 300_000)
	streams := 3000
	start := time.Now()
	want := base.produce(t, streams, events/streams, "process/t/")
	t.Logf("produced %d events in %v", events, time.Since(start).Round(time.Millisecond))
	total := int64(streams * (events / streams))

	run := func(setting recoverySetting, kill bool) (float64, int) {
		f := *base
		f.name = uniqueName("throughput")
		p := f.counter(t)
		begin := time.Now()
		rs := startReplicaSet(t, &f, 3, setting)
		defer rs.stop()
		kills := 0
		next := begin.Add(5 * time.Second)
		// After each kill: how long until every partition's progress
		// moved again (the stall the kill caused), unless the next kill
		// or the end came first.
		var killedAt time.Time
		var at []int64
		var back []time.Duration
		var stalls []string
		stalled := func() {
			if at == nil {
				return
			}
			if slices.Contains(back, 0) {
				stalls = append(stalls, ">"+fmt.Sprintf("%.1f", time.Since(killedAt).Seconds()))
			} else {
				stalls = append(stalls, fmt.Sprintf("%.1f", slices.Max(back).Seconds()))
			}
		}
		for {
			var sum int64
			for _, n := range f.counts(t, p) {
				sum += n
			}
			if sum >= total {
				break
			}
			if time.Since(begin) > 10*time.Minute {
				t.Fatalf("%s: %d of %d events applied after 10 minutes", setting.name, sum, total)
			}
			if at != nil && slices.Contains(back, 0) {
				for i, n := range f.progressOf(t, 6) {
					if back[i] == 0 && n > at[i] {
						back[i] = time.Since(killedAt)
					}
				}
			}
			if kill && time.Now().After(next) {
				stalled()
				at, back = f.progressOf(t, 6), make([]time.Duration, 6)
				killedAt = time.Now()
				rs.crash(kills % 3)
				kills++
				next = next.Add(5 * time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		}
		elapsed := time.Since(begin)
		stalled()
		if kill {
			t.Logf("%s: seconds from each kill until every partition moved again: %v", setting.name, stalls)
		}
		f.waitCounts(t, p, want, time.Minute) // exact: nothing lost, nothing twice
		return float64(total) / elapsed.Seconds(), kills
	}
	for round := range envInt("PROJECTOR_MEASURE_ROUNDS", 2) {
		clean, _ := run(settings[0], false)
		t.Logf("round %d no faults (%s): %.0f events/s", round+1, settings[0].name, clean)
		for _, s := range settings {
			faulty, kills := run(s, true)
			t.Logf("round %d %s: a SIGKILL every 5 s (%d kills) %.0f events/s; ratio to no faults %.2f",
				round+1, s.name, kills, faulty, faulty/clean)
		}
	}
}
