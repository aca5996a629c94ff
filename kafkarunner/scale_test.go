package kafkarunner_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestReplicasScaleAndSurviveACrash: three replicas, one of them a
// separate process, consume 100,000 events over 2,000 streams; the process
// is SIGKILLed mid-run (nothing flushed, nothing committed, and its member
// stays in the group until its session expires) and another replica joins.
// Every stream's count equals what was produced: no event lost, none
// applied twice.
func TestReplicasScaleAndSurviveACrash(t *testing.T) {
	f := newFixture(t, 6)
	requireEnvServers(t, f)
	want := f.produce(t, 2000, 50, "process/t/")
	p := f.counter(t)
	crashing := startReplicaProcess(t, f, os.Stderr, envSession+"=6s")
	t.Cleanup(func() {
		_ = crashing.Process.Kill()
		_, _ = crashing.Process.Wait()
	})
	replicas := []*replica{f.start(t, p, nil), f.start(t, p, nil)}

	waitApplied(t, f, p, 20_000)
	if err := crashing.Process.Kill(); err != nil { // SIGKILL: a crash, not a shutdown
		t.Fatal(err)
	}
	_, _ = crashing.Process.Wait()
	joined := f.start(t, p, nil)
	f.waitCounts(t, p, want, 3*time.Minute)
	if len(joined.r.Assigned()) == 0 {
		t.Error("the replica that joined got no partition")
	}
	var skipped int64
	for _, rep := range append(replicas, joined) {
		skipped += rep.r.Stats().Skipped
	}
	t.Logf("records redelivered after the crash and skipped by their cursors: %d", skipped)
}

func waitApplied(t *testing.T, f *fixture, p *redischeckpoint.AtomicProjection, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var sum int64
		for _, c := range f.counts(t, p) {
			sum += c
		}
		if sum >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d events applied after 2 minutes", n)
}

// Environment of a replica process started by TestReplicaProcessKilled and
// TestZombieCannotPark.
const (
	envReplica    = "PROJECTOR_TEST_REPLICA"
	envTopic      = "PROJECTOR_TEST_TOPIC"
	envNamespace  = "PROJECTOR_TEST_NAMESPACE"
	envProjection = "PROJECTOR_TEST_PROJECTION"
	// envSession is the consumer group session timeout (a Go duration);
	// heartbeats go every second.
	envSession = "PROJECTOR_TEST_SESSION_TIMEOUT"
	// envLatch is a directory: on an event of type "Poison" the replica
	// creates <dir>/blocked, waits until <dir>/release exists, and then
	// fails the event (once: no retries).
	envLatch = "PROJECTOR_TEST_LATCH"
	// envKafkaProxy is the address every Kafka connection of the replica
	// goes to (a testenv.Proxy in front of the single broker).
	envKafkaProxy = "PROJECTOR_TEST_KAFKA_PROXY"
	// envResume is a directory for the resume tests: an event of type
	// "Poison" fails unless <dir>/fixed exists; on an event of type
	// "Latch", while <dir>/hold exists, the replica creates <dir>/blocked
	// and waits until <dir>/release exists before applying it.
	envResume = "PROJECTOR_TEST_RESUME"
	// envBatchSize sets RunnerConfig.BatchSize.
	envBatchSize = "PROJECTOR_TEST_BATCH_SIZE"
	// envVersioned makes the replica a VersionedRunner: it runs the live
	// version and a rebuild's (with a 200ms refresh).
	envVersioned = "PROJECTOR_TEST_VERSIONED"
	// envVersionsRefresh sets VersionedConfig.Refresh (a Go duration): a
	// long one makes a replica learn late that its version was replaced.
	envVersionsRefresh = "PROJECTOR_TEST_VERSIONS_REFRESH"
	// envHeartbeat sets Config.HeartbeatInterval (a Go duration).
	envHeartbeat = "PROJECTOR_TEST_HEARTBEAT_INTERVAL"
	// envInstanceID sets Config.InstanceID (static membership).
	envInstanceID = "PROJECTOR_TEST_INSTANCE_ID"
	// envGroupProtocol "consumer" sets Config.ServerSideBalancer (KIP-848).
	envGroupProtocol = "PROJECTOR_TEST_GROUP_PROTOCOL"
)

// exists reports whether a file exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// replicaMain runs one replica until SIGTERM (graceful) or SIGKILL.
func replicaMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	client := redis.NewClient(&redis.Options{Addr: os.Getenv(testenv.EnvRedisAddr)})
	defer client.Close()
	rstore, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: os.Getenv(envNamespace)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	latch, resume := os.Getenv(envLatch), os.Getenv(envResume)
	p, err := rstore.NewAtomicProjection(os.Getenv(envProjection), func(e framework.Event, w *redischeckpoint.Writes) error {
		switch {
		case e.Type == "Poison" && resume != "" && !exists(filepath.Join(resume, "fixed")):
			return fmt.Errorf("cannot apply %s: poison", e)
		case e.Type == "Latch" && resume != "" && exists(filepath.Join(resume, "hold")):
			_ = os.WriteFile(filepath.Join(resume, "blocked"), nil, 0o600)
			for !exists(filepath.Join(resume, "release")) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if e.Type == "Poison" && latch != "" {
			_ = os.WriteFile(filepath.Join(latch, "blocked"), nil, 0o600)
			for {
				if _, err := os.Stat(filepath.Join(latch, "release")); err == nil {
					return fmt.Errorf("cannot apply %s: poison", e)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := kafkarunner.Config{
		Seeds: []string{os.Getenv(testenv.EnvKafkaSeeds)}, Topic: os.Getenv(envTopic), Projection: p,
		Checkpoints: rstore, FlushInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("pid", os.Getpid()),
	}
	if d, err := time.ParseDuration(os.Getenv(envSession)); err == nil {
		cfg.SessionTimeout, cfg.HeartbeatInterval = d, time.Second
	}
	if d, err := time.ParseDuration(os.Getenv(envHeartbeat)); err == nil {
		cfg.HeartbeatInterval = d
	}
	cfg.InstanceID = os.Getenv(envInstanceID)
	cfg.ServerSideBalancer = os.Getenv(envGroupProtocol) == "consumer"
	if latch != "" || resume != "" {
		cfg.Retry = kafkarunner.RetryPolicy{Attempts: 1}
	}
	if n, err := strconv.Atoi(os.Getenv(envBatchSize)); err == nil {
		cfg.BatchSize = n
	}
	if resume != "" {
		cfg.ParkedRefresh = 200 * time.Millisecond
	}
	if proxy := os.Getenv(envKafkaProxy); proxy != "" {
		var d net.Dialer
		cfg.ClientOpts = append(cfg.ClientOpts, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, proxy)
		}))
	}
	var run func(ctx context.Context) error
	if os.Getenv(envVersioned) == "1" {
		cfg.Projection = nil
		cfg.ControlRefresh = 200 * time.Millisecond
		refresh, _ := time.ParseDuration(os.Getenv(envVersionsRefresh))
		vr, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{Name: p.Name(), Runner: cfg, Refresh: refresh,
			NewProjection: func(name string) (framework.Projection, error) { return p.Version(name) }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		run = vr.Run
	} else {
		r, err := kafkarunner.New(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		run = r.Run
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// requireEnvServers: replica processes reach the servers through the
// environment, so they need servers given there, not fakes.
func requireEnvServers(t *testing.T, f *fixture) {
	t.Helper()
	if f.env.Kind != testenv.KindEnv || f.redis.Kind != testenv.KindEnv {
		if testenv.RequireReal() {
			t.Fatal("replica processes need servers given by environment (scripts/test.sh)")
		}
		t.Skipf("replica processes need servers given by environment, not %s/%s", f.env.Kind, f.redis.Kind)
	}
}

// startReplicaProcess starts this test binary as a replica of f's
// projection (see replicaMain), with more environment in env, its output to
// out.
func startReplicaProcess(t *testing.T, f *fixture, out *os.File, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envReplica+"=1", envTopic+"="+f.store.Config().Topic, envNamespace+"="+f.ns, envProjection+"="+f.name), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestReplicaProcessKilled runs replicas as separate OS processes, kills
// one with SIGKILL mid-run and restarts it; the result is exact.
func TestReplicaProcessKilled(t *testing.T) {
	f := newFixture(t, 6)
	requireEnvServers(t, f)
	want := f.produce(t, 2000, 50, "process/t/")
	p := f.counter(t) // only to read the read model; the processes apply
	startProc := func() *exec.Cmd { return startReplicaProcess(t, f, os.Stderr) }
	procs := []*exec.Cmd{startProc(), startProc(), startProc()}
	t.Cleanup(func() {
		for _, c := range procs {
			_ = c.Process.Signal(syscall.SIGTERM)
			_, _ = c.Process.Wait()
		}
	})
	waitApplied(t, f, p, 20_000)
	if err := procs[0].Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_, _ = procs[0].Process.Wait()
	procs[0] = startProc()
	f.waitCounts(t, p, want, 3*time.Minute)
}
