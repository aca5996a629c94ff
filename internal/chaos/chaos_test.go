package chaos

import (
	"context"
	"fmt"
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

func TestScheduleIsAFunctionOfTheSeed(t *testing.T) {
	a := Schedule(1, 5*time.Minute, 6*time.Second)
	b := Schedule(1, 5*time.Minute, 6*time.Second)
	c := Schedule(2, 5*time.Minute, 6*time.Second)
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

// TestCheckerFindsViolations proves the checker is not vacuous: lost,
// duplicated and unexpected applications written by hand are all reported.
func TestCheckerFindsViolations(t *testing.T) {
	_, rds := realServers(t)
	ctx := t.Context()
	cfg := Config{RedisAddr: rds.Addr, Namespace: rds.Prefix(t), Streams: 3}
	_, p, closeFn, err := openProjection(cfg.RedisAddr, cfg.Namespace, "counter")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	// s-0000: 1..3 once (fine); s-0001: 2 missing, 3 twice; s-0002: 1 once, 2 beyond acked.
	for key, fields := range map[string][]any{
		p.Key(AppliedKeyPart, StreamName(0)): {"1", 1, "2", 1, "3", 1},
		p.Key(AppliedKeyPart, StreamName(1)): {"1", 1, "3", 2},
		p.Key(AppliedKeyPart, StreamName(2)): {"1", 1, "2", 1},
	} {
		if err := rds.Client.HSet(ctx, key, fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tr := &truth{acked: map[string]uint64{StreamName(0): 3, StreamName(1): 3, StreamName(2): 1}, uncertain: map[string]bool{}}
	rep := &Report{ViolationCounts: map[string]int{}}
	if err := check(ctx, cfg, "counter", tr, rep); err != nil {
		t.Fatal(err)
	}
	want := []Violation{
		{Kind: "lost", Stream: StreamName(1), Sequence: 2},
		{Kind: "duplicated", Stream: StreamName(1), Sequence: 3, Count: 2},
		{Kind: "unexpected", Stream: StreamName(2), Sequence: 2, Count: 1},
	}
	if !reflect.DeepEqual(rep.Violations, want) {
		t.Fatalf("violations %+v, want %+v", rep.Violations, want)
	}
	if !rep.Failed() {
		t.Fatal("a report with violations does not fail")
	}
}

// TestChaosShort runs the suite for two seeds at once (about 40 s each):
// worker processes are SIGKILLed, stopped past their session (zombies) and
// scaled while events are appended; every acked event must be applied
// exactly once and the group's lag must reach 0.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("40 s of faults against worker processes")
	}
	kafka, rds := realServers(t)
	bin := filepath.Join(t.TempDir(), "projector-chaos")
	build := exec.Command("go", "build", "-o", bin, "github.com/projector-dev/projector/cmd/projector-chaos")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build projector-chaos: %v\n%s", err, out)
	}
	injected := map[string]int{}
	reports := make(chan *Report, 2)
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range []uint64{25, 8} { // together: kill, zombie, partition, scale-up, scale-down
			t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
				defer cancel()
				var log strings.Builder
				topic := kafka.TopicName(t, "chaos")
				adm := kafka.Admin(t)
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					_, _ = adm.DeleteGroups(ctx, GroupName(topic))
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
					Seed: seed, Duration: 40 * time.Second, Replicas: 3, Streams: 120, Rate: 300,
					Session: 6 * time.Second, RecoverWithin: time.Minute,
					Brokers: kafka.Seeds, RedisAddr: rds.Addr,
					Topic: topic, Namespace: rds.Prefix(t),
					WorkerBinary: bin, WorkDir: work, Log: &log,
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
					t.Fatalf("seed %d failed: violations %v, lag %d, errors %v", seed, rep.ViolationCounts, rep.LagAtEnd, rep.Errors)
				}
				if rep.EventsAppended == 0 || rep.EventsChecked != rep.EventsAppended {
					t.Fatalf("appended %d, checked %d", rep.EventsAppended, rep.EventsChecked)
				}
				reports <- rep
			})
		}
	})
	close(reports)
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
