package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// realServers returns Kafka and Redis, failing (PROJECTOR_REQUIRE_REAL=1)
// or skipping when they are fakes: worker processes need real servers.
func realServers(t *testing.T) (*testenv.KafkaEnv, *testenv.RedisEnv) {
	t.Helper()
	kafka, rds := testenv.Kafka(t), testenv.Redis(t)
	if !kafka.Real || !rds.Real {
		if testenv.RequireReal() {
			t.Fatalf("the fault suite needs a real Kafka and Redis (have %s/%s)", kafka.Kind, rds.Kind)
		}
		t.Skipf("the fault suite needs a real Kafka and Redis, not %s/%s", kafka.Kind, rds.Kind)
	}
	return kafka, rds
}

// haTopology returns the servers of scripts/ha.sh (started by the test
// command), failing under PROJECTOR_REQUIRE_REAL=1 and skipping otherwise
// when they are not running.
func haTopology(t *testing.T, name string) Topology {
	t.Helper()
	topo, ok, err := HATopologyFromEnv(name)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		if os.Getenv("PROJECTOR_NO_HA") == "1" && !strings.EqualFold(os.Getenv("CI"), "true") {
			t.Skipf("PROJECTOR_NO_HA=1: the %s topology was not started", name)
		}
		if testenv.RequireReal() {
			t.Fatalf("the %s topology needs scripts/ha.sh's servers (PROJECTOR_HA_KAFKA_SEEDS unset; scripts/test.sh starts them unless PROJECTOR_NO_HA=1)", name)
		}
		t.Skipf("the %s topology needs scripts/ha.sh's servers: scripts/ha.sh up, then eval its export lines", name)
	}
	return topo
}

func TestScheduleIsAFunctionOfTheSeed(t *testing.T) {
	kinds := Kinds(Topology{Ctl: "ha.sh", Redis: RedisTopology{MasterName: "m"}}, true, true)
	if !reflect.DeepEqual(kinds, FaultKinds) {
		t.Fatalf("a controllable Sentinel topology with projectorctl allows %v, want every kind %v", kinds, FaultKinds)
	}
	a := Schedule(1, 5*time.Minute, 6*time.Second, kinds)
	b := Schedule(1, 5*time.Minute, 6*time.Second, kinds)
	c := Schedule(2, 5*time.Minute, 6*time.Second, kinds)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 1 gave %v then %v", a, b)
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 1 and 2 gave the same schedule")
	}
	for i, f := range a {
		if f.Kind == FaultZombie && f.Stop <= 6*time.Second {
			t.Errorf("zombie %v does not outlast the 6s session", f)
		}
		if i > 0 && f.At < a[i-1].At+a[i-1].Stop {
			t.Errorf("fault %v overlaps %v", f, a[i-1])
		}
	}
}

// TestKindsWithoutWritersExcludeWriterFaults: writer faults are drawn only
// with writer processes, and a writer zombie outlasts the append lease.
func TestKindsWithoutWritersExcludeWriterFaults(t *testing.T) {
	topo := Topology{Ctl: "ha.sh", Redis: RedisTopology{MasterName: "m"}}
	for _, k := range Kinds(topo, true, false) {
		if k == FaultWriterKill || k == FaultWriterZombie {
			t.Fatalf("Kinds without writers allows %s", k)
		}
	}
	if got := (Config{Topology: topo, CtlBinary: "ctl", Duration: 5 * time.Minute}).PlannedSchedule(); len(got) == 0 {
		t.Fatal("no schedule")
	} else {
		for _, f := range got {
			if f.Kind == FaultWriterKill || f.Kind == FaultWriterZombie {
				t.Fatalf("a run without writers plans %v", f)
			}
		}
	}
	for _, lease := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second} {
		for _, f := range ScheduleWithLease(3, 10*time.Minute, 6*time.Second, lease, []string{FaultWriterZombie, FaultWriterKill}) {
			if f.Kind == FaultWriterZombie && f.Stop <= lease+2*time.Second {
				t.Errorf("writer zombie %v does not outlast lease %v + 2s", f, lease)
			}
		}
	}
}

// TestWriterTruthKindsOfLines: the truth built from writer lines, and the
// tries of an exited writer taken as uncertain.
func TestWriterTruthKindsOfLines(t *testing.T) {
	wt := newWriterTruth()
	for _, l := range []string{
		"try s-0001 w01-1", "ack s-0001 1 w01-1",
		"try s-0002 w01-2", "notwritten s-0002 w01-2",
		"try s-0003 w01-3", "conflict s-0003 w01-3 4",
		"try s-0004 w01-4", "uncertain s-0004 w01-4 kafkastore: append outcome unknown",
		"try s-0005 w01-5",
	} {
		wt.line("w01", l)
	}
	if n := wt.exited("w01"); n != 1 {
		t.Fatalf("%d in flight at exit, want 1", n)
	}
	if wt.acked["s-0001"][1] != "w01-1" || wt.refused["w01-2"] != "not written" || wt.refused["w01-3"] != "conflict" ||
		wt.uncertain["w01-4"] != "s-0004" || wt.uncertain["w01-5"] != "s-0005" || len(wt.malformed) != 0 {
		t.Fatalf("truth %+v", wt)
	}
	if wt.acks.Load() != 1 || wt.notWritten.Load() != 1 || wt.conflicts.Load() != 1 || wt.uncertainN.Load() != 1 || wt.lost.Load() != 1 {
		t.Fatal("wrong counts")
	}
	pt := wt.prefixTruth()
	if pt.acked["s-0001"] != 1 || pt.acked["s-0004"] != 1 || pt.acked["s-0005"] != 1 || pt.acked["s-0002"] != 0 {
		t.Fatalf("prefix truth %v", pt.acked)
	}
}

// TestCheckerFindsViolations proves the checker is not vacuous: lost,
// duplicated and unexpected applications written by hand are all reported.
func TestCheckerFindsViolations(t *testing.T) {
	_, rds := realServers(t)
	ctx := t.Context()
	_, p, closeFn, err := openProjection(rds.Addr, rds.Prefix(t), "counter")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	// s-0000: 1..3 once (fine); s-0001: 2 missing, 3 twice; s-0002: 1 once, 2 beyond acked;
	// s-0003: 1, 2 once but 2 applied before 1.
	for key, fields := range map[string][]any{
		p.Key(AppliedKeyPart, StreamName(0)): {"1", 1, "2", 1, "3", 1},
		p.Key(AppliedKeyPart, StreamName(1)): {"1", 1, "3", 2},
		p.Key(AppliedKeyPart, StreamName(2)): {"1", 1, "2", 1},
		p.Key(AppliedKeyPart, StreamName(3)): {"1", 1, "2", 1},
		p.Key(AtKeyPart, StreamName(3)):      {"1", 2000, "2", 1000},
	} {
		if err := rds.Client.HSet(ctx, key, fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tr := &truth{acked: map[string]uint64{StreamName(0): 3, StreamName(1): 3, StreamName(2): 1, StreamName(3): 2}, uncertain: map[string]bool{}}
	rep := &Report{ViolationCounts: map[string]int{}}
	if err := check(ctx, rds.Client, p, 4, tr, rep); err != nil {
		t.Fatal(err)
	}
	want := []Violation{
		{Kind: "lost", Stream: StreamName(1), Sequence: 2},
		{Kind: "duplicated", Stream: StreamName(1), Sequence: 3, Count: 2},
		{Kind: "unexpected", Stream: StreamName(2), Sequence: 2, Count: 1},
		{Kind: "out-of-order", Stream: StreamName(3), Sequence: 2, Detail: "applied 1µs before sequence 1"},
	}
	if !reflect.DeepEqual(rep.Violations, want) {
		t.Fatalf("violations %+v, want %+v", rep.Violations, want)
	}
	if !rep.Failed() {
		t.Fatal("a report with violations does not fail")
	}
}

// shortRun is one run of TestChaosShort.
type shortRun struct {
	name     string
	seed     uint64
	topo     func(t *testing.T) Topology
	kinds    []string
	workload string
	writers  int // writer processes (0: the in-process raw producer)
}

// TestChaosShort runs the suite on both topologies at once, 45 s of faults
// each: worker processes are SIGKILLed, stopped past their session
// (zombies), cut off from Kafka or Redis, slowed, reset and scaled; brokers
// (the partition leader) and the Redis server holding the keys are
// SIGKILLed and restarted, the Sentinels fail Redis over; an admin
// rebuilds and replays; poison records of every kind are appended. Every
// acked event must be applied exactly once and in order by the live
// version, every poison stream parked as expected, the lag must reach 0
// with every partition owned and every worker ready. The seeds and kinds
// below together inject every kind (the test checks it).
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("40 s of faults against worker processes")
	}
	kafka, rds := realServers(t)
	dir := t.TempDir()
	bin, ctl, billing := filepath.Join(dir, "projector-chaos"), filepath.Join(dir, "projectorctl"), filepath.Join(dir, "billing")
	for out, pkg := range map[string]string{bin: "cmd/projector-chaos", ctl: "cmd/projectorctl", billing: "examples/billing"} {
		build := exec.Command("go", "build", "-o", out, "github.com/projector-dev/projector/"+pkg)
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	single := func(*testing.T) Topology { return SingleTopology(kafka.Seeds, rds.Addr) }
	runs := []shortRun{
		{"single/replicas", 6, single, []string{FaultKill, FaultZombie, FaultScaleUp, FaultScaleDown, FaultPartition}, "", 2},
		{"single/network+admin", 204, single, []string{FaultRedisPartition, FaultLatency, FaultReset, FaultRebuild, FaultReplay, FaultPoison}, "", 0},
		{"sentinel", 28, func(t *testing.T) Topology { return haTopology(t, TopologySentinel) },
			[]string{FaultBrokerKill, FaultRedisRestart, FaultFailover, FaultPoison, FaultWriterKill, FaultWriterZombie}, "", 2},
		{"cluster", 1, func(t *testing.T) Topology { return haTopology(t, TopologyCluster) },
			[]string{FaultBrokerKill, FaultRedisRestart, FaultRebuild, FaultKill}, "", 0},
		{"single/billing", 1, single, []string{FaultKill, FaultZombie, FaultRebuild, FaultRedisPartition, FaultReplay}, WorkloadBilling, 0},
	}
	reports := make(chan *Report, len(runs))
	t.Run("runs", func(t *testing.T) {
		for _, run := range runs {
			t.Run(run.name, func(t *testing.T) {
				t.Parallel()
				topo := run.topo(t)
				ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
				defer cancel()
				var log strings.Builder
				topic := kafka.TopicName(t, "chaos")
				ns := rds.Prefix(t)
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if err := Cleanup(ctx, topo, topic, ns); err != nil {
						t.Logf("cleanup: %v", err)
					}
				})
				work := t.TempDir()
				defer func() {
					if !t.Failed() {
						return
					}
					logs, _ := filepath.Glob(filepath.Join(work, "*.log"))
					for _, l := range logs {
						b, _ := os.ReadFile(l)
						t.Logf("%s (last 3000 bytes):\n%s", filepath.Base(l), b[max(0, len(b)-3000):])
					}
				}()
				rep, err := Run(ctx, Config{
					Seed: run.seed, Duration: 45 * time.Second, Replicas: 3, Streams: 120, Rate: 200,
					Session: 6 * time.Second, RecoverWithin: 90 * time.Second,
					Topology: topo, Kinds: run.kinds, Workload: run.workload, BillingBinary: billing, Writers: run.writers,
					Topic: topic, Namespace: ns,
					WorkerBinary: bin, CtlBinary: ctl, WorkDir: work, Log: &log,
				})
				var text strings.Builder
				if rep != nil {
					rep.WriteText(&text)
				}
				t.Logf("log:\n%s\nreport:\n%s", log.String(), text.String())
				if err != nil {
					t.Fatal(err)
				}
				if rep.Failed() {
					t.Fatalf("seed %d failed: violations %v, lag %d, errors %v", run.seed, rep.ViolationCounts, rep.LagAtEnd, rep.Errors)
				}
				if run.writers > 0 {
					// The streams hold every acked event and the uncertain
					// ones that were written; every one was checked.
					if rep.EventsAppended == 0 || rep.EventsChecked != rep.EventsInStreams || rep.EventsInStreams < rep.EventsAppended ||
						rep.EventsInStreams > rep.EventsAppended+rep.AppendsUncertain+rep.AppendsInFlight {
						t.Fatalf("acked %d (uncertain %d, in flight %d), in streams %d, checked %d",
							rep.EventsAppended, rep.AppendsUncertain, rep.AppendsInFlight, rep.EventsInStreams, rep.EventsChecked)
					}
				} else if rep.EventsAppended == 0 || (run.workload == "" && rep.EventsChecked != rep.EventsAppended) || rep.EventsChecked == 0 {
					t.Fatalf("appended %d, checked %d", rep.EventsAppended, rep.EventsChecked)
				}
				reports <- rep
			})
		}
	})
	close(reports)
	injected := map[string]int{}
	for rep := range reports {
		for k, n := range rep.FaultsPerKind {
			injected[k] += n
		}
	}
	if t.Failed() {
		return
	}
	for _, k := range FaultKinds {
		if injected[k] == 0 {
			t.Errorf("no %s fault was injected (%v)", k, injected)
		}
	}
}

// TestPrefixCheckAllowsTheEventInFlight: during the workload, a worker may
// apply a stream's next event before its producer has recorded the ack; a
// prefix check (before a replay) must not call that unexpected, but must
// call anything beyond it, and any hole, a violation.
func TestPrefixCheckAllowsTheEventInFlight(t *testing.T) {
	_, rds := realServers(t)
	ctx := t.Context()
	_, p, closeFn, err := openProjection(rds.Addr, rds.Prefix(t), "counter")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	for key, fields := range map[string][]any{
		p.Key(AppliedKeyPart, StreamName(0)): {"1", 1, "2", 1, "3", 1}, // 3 in flight: fine
		p.Key(AppliedKeyPart, StreamName(1)): {"1", 1, "2", 1, "3", 1, "4", 1},
		p.Key(AppliedKeyPart, StreamName(2)): {"1", 1, "3", 1},
	} {
		if err := rds.Client.HSet(ctx, key, fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tr := &truth{acked: map[string]uint64{StreamName(0): 2, StreamName(1): 2, StreamName(2): 3}, uncertain: map[string]bool{}}
	var got []Violation
	if err := checkApplied(ctx, rds.Client, p, 3, tr, true, "", func(v Violation) { got = append(got, v) }, nil); err != nil {
		t.Fatal(err)
	}
	want := []Violation{
		{Kind: "unexpected", Stream: StreamName(1), Sequence: 4, Count: 1},
		{Kind: "lost", Stream: StreamName(2), Sequence: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("violations %+v, want %+v", got, want)
	}
}
