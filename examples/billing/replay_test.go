package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestReplayEndToEnd builds the billing read model with two workers, then
// rebuilds it with the real admin command (projectorctl replay --yes
// --wait, built from ./cmd/projectorctl) while the workers run, and checks
// that the rebuilt model equals the expected totals exactly and that the
// replay raised the epoch and reset the model once.
func TestReplayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds projectorctl and runs two workers")
	}
	kafka, redisEnv := serversFromEnvironment(t)
	ctl := filepath.Join(t.TempDir(), "projectorctl")
	build := exec.Command("go", "build", "-o", ctl, "github.com/projector-dev/projector/cmd/projectorctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build projectorctl: %v\n%s", err, out)
	}
	topic := kafka.TopicName(t, "mabis")
	ns := redisEnv.Prefix(t)
	setWorkerEnv(t, kafka, redisEnv, topic, ns, map[string]string{
		"PROJECTOR_PARTITIONS": "4", "PROJECTOR_TENANT": "netz-replay", "PROJECTOR_MONTH": "2026-10", "PROJECTOR_MALOS": "60",
		"PROJECTOR_SEED": "9", "PROJECTOR_KAFKA_SESSION_TIMEOUT": "6s",
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"generate"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("billing generate: %v", err)
	}
	for range 2 {
		workerCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- run(workerCtx, []string{"worker"}, io.Discard, io.Discard) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("billing worker: %v", err)
			}
		})
	}
	month, _ := mabis.ParseMonth("2026-10") // the autumn clock change: 100 quarter hours on the 25th
	_, want, err := loadgen.Build(loadgen.Config{Tenant: "netz-replay", Month: month, MaLos: 60, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := openReadModel(options{tenant: "netz-replay", month: month, projection: mabis.ProjectionName, namespace: ns}, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	waitVerified := func(what string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if err = want.Verify(ctx, rm.reader); err == nil {
				return
			}
		}
		t.Fatalf("%s: the read model differs from the expected totals: %v", what, err)
	}
	waitVerified("first build")

	cmd := exec.CommandContext(ctx, ctl, "replay", mabis.ProjectionName, "--yes", "--wait", "--by", "replay-test", "--reason", "end-to-end test")
	cmd.Env = os.Environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("projectorctl replay: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	waitVerified("after the replay")
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: redisEnv.Client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	control, err := store.Control(ctx, mabis.ProjectionName)
	if err != nil {
		t.Fatal(err)
	}
	if control.ResetDone != 1 || control.Paused || control.Replay == nil || control.Replay.By != "replay-test" {
		t.Errorf("control after the replay = %+v (replay %+v)", control, control.Replay)
	}
	if !strings.Contains(stdout.String(), "caught up") {
		t.Errorf("projectorctl did not report the rebuild caught up:\n%s", stdout.String())
	}
}

// serversFromEnvironment returns the Kafka and Redis of scripts/test.sh: the
// commands under test connect by address, so in-process fakes will not do.
func serversFromEnvironment(t *testing.T) (*testenv.KafkaEnv, *testenv.RedisEnv) {
	t.Helper()
	kafka, redisEnv := testenv.Kafka(t), testenv.Redis(t)
	if kafka.Kind != testenv.KindEnv || redisEnv.Kind != testenv.KindEnv {
		if testenv.RequireReal() {
			t.Fatal("needs servers given by environment (scripts/test.sh)")
		}
		t.Skipf("needs servers given by environment, not %s/%s", kafka.Kind, redisEnv.Kind)
	}
	return kafka, redisEnv
}

// setWorkerEnv configures the billing commands through their PROJECTOR_*
// variables, as the Helm chart does, for this test.
func setWorkerEnv(t *testing.T, kafka *testenv.KafkaEnv, redisEnv *testenv.RedisEnv, topic, namespace string, more map[string]string) {
	t.Helper()
	env := map[string]string{
		"PROJECTOR_KAFKA_BROKERS": strings.Join(kafka.Seeds, ","), "PROJECTOR_TOPIC": topic,
		"PROJECTOR_REDIS_URL": "redis://" + redisEnv.Addr, "PROJECTOR_REDIS_NAMESPACE": namespace, "PROJECTOR_HTTP_ADDR": "127.0.0.1:0",
		"PROJECTOR_SHUTDOWN_TIMEOUT": "10s", "PROJECTOR_LOG_LEVEL": "warn",
		// A consumer group is cluster-wide: one of its own per test.
		"PROJECTOR_GROUP": fmt.Sprintf("billing-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()),
	}
	maps.Copy(env, more)
	for name, value := range env {
		t.Setenv(name, value)
	}
}
