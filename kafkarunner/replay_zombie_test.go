package kafkarunner_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// envResetZombie is a directory: set, the test binary runs as a replica
// (resetZombieMain) whose reset of the read model, once <dir>/hold exists,
// creates <dir>/blocked and waits until <dir>/release exists.
const envResetZombie = "PROJECTOR_TEST_RESET_ZOMBIE"

// zombieClaimTTL is the reset claim's lifetime in the replica process.
const zombieClaimTTL = 2 * time.Second

func init() {
	if dir := os.Getenv(envResetZombie); dir != "" {
		os.Exit(resetZombieMain(dir))
	}
}

// latchedReset blocks its reset at a latch, then drops the read model.
type latchedReset struct {
	*redischeckpoint.AtomicProjection
	dir string
}

func (p latchedReset) Reset(ctx context.Context) error {
	if exists(filepath.Join(p.dir, "hold")) {
		_ = os.WriteFile(filepath.Join(p.dir, "blocked"), nil, 0o600)
		for !exists(filepath.Join(p.dir, "release")) {
			time.Sleep(5 * time.Millisecond)
		}
		// The deletes were under way when the process froze: waking, it
		// sends them before it can notice that its claim expired (the
		// renewal that would cancel them races them).
		ctx = context.WithoutCancel(ctx)
	}
	return p.AtomicProjection.Reset(ctx)
}

// resetZombieMain runs one replica with a latched reset until SIGTERM.
func resetZombieMain(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	kafkarunner.SetResetClaimTTL(zombieClaimTTL)
	client := redis.NewClient(&redis.Options{Addr: os.Getenv(testenv.EnvRedisAddr)})
	defer client.Close()
	rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: os.Getenv(envNamespace)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := rstore.NewAtomicProjection(os.Getenv(envProjection), func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := kafkarunner.New(kafkarunner.Config{
		Seeds: []string{os.Getenv(testenv.EnvKafkaSeeds)}, Topic: os.Getenv(envTopic), Projection: latchedReset{p, dir},
		Checkpoints: rstore, FlushInterval: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond, ReplicaID: "zombie",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("pid", os.Getpid()),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestZombieResetAfterTakeover: the replica that claimed a replay's reset
// is frozen (SIGSTOP) inside it, past its claim's lifetime. Another replica
// takes the reset over, completes it and rebuilds the read model, and new
// events are applied. The frozen replica wakes (SIGCONT) and carries on with
// its reset: every delete checks the claim in the same script, so it
// deletes nothing, and it cannot mark the reset done. Before, it wiped the
// rebuilt model and its cursors while the offsets stayed committed: the
// events were lost, with lag 0.
func TestZombieResetAfterTakeover(t *testing.T) {
	f := newFixture(t, 2)
	requireEnvServers(t, f)
	want := f.produce(t, 20, 3, "process/t/")
	dir := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "zombie.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	zombie := startReplicaProcess(t, f, logFile, envResetZombie+"="+dir)
	t.Cleanup(func() {
		_ = zombie.Process.Signal(syscall.SIGCONT)
		_ = zombie.Process.Signal(syscall.SIGTERM)
		_, _ = zombie.Process.Wait()
	})
	p := f.counter(t) // reads the read model
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)

	// A replay: the replica-to-be-zombie claims the reset and blocks in it.
	if err := os.WriteFile(filepath.Join(dir, "hold"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	epoch, start := f.beginReplay(t)
	f.waitGroupEmpty(t)
	f.resetOffsets(t, start)
	f.setPaused(t, false)
	waitFor(t, 30*time.Second, "the replica process blocks in its reset", func() (bool, string) {
		return exists(filepath.Join(dir, "blocked")), "not blocked"
	})
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	claim := fmt.Sprintf("%s:{%s}:reset-claim:%d", f.ns, f.name, epoch)
	waitFor(t, 10*zombieClaimTTL, "the frozen replica's claim expires", func() (bool, string) {
		n, err := f.rdb.Exists(ctxFor(t), claim).Result()
		return err == nil && n == 0, fmt.Sprint(n, err)
	})

	// Another replica takes the reset over and rebuilds.
	owner := f.start(t, p, func(c *kafkarunner.Config) { fast(c); c.ControlRefresh = 200 * time.Millisecond })
	f.waitCounts(t, p, want, time.Minute)
	for id, n := range f.produce(t, 20, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	if ctl, _ := f.rstore.Control(ctxFor(t), f.name); ctl.ResetDone != epoch {
		t.Fatalf("the reset was not taken over: control %+v", ctl)
	}

	// The zombie wakes inside its reset.
	before, _ := os.ReadFile(logPath)
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the zombie finishes its reset", func() (bool, string) {
		log, _ := os.ReadFile(logPath)
		woke := string(log[len(before):])
		return strings.Contains(woke, "resetting the read model failed") || strings.Contains(woke, "partition assigned"), woke
	})
	f.settle(t, p, want)
	for id, n := range f.produce(t, 20, 1, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)
	if ctl, _ := f.rstore.Control(ctxFor(t), f.name); ctl.ResetDone != epoch || ctl.ResetEpoch != epoch {
		t.Errorf("control after the zombie woke: %+v", ctl)
	}
	if parked, _ := owner.r.Parked(ctxFor(t)); len(parked) != 0 {
		t.Errorf("parked: %+v", parked)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log[len(before):]), "claim") {
		t.Errorf("the zombie's log does not say its claim was lost:\n%s", log[len(before):])
	}
}
