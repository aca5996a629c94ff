package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// envWorkerProcess makes the test binary run "billing worker" (configured
// by the PROJECTOR_* variables, as in the Helm chart) instead of the tests.
const envWorkerProcess = "PROJECTOR_BILLING_TEST_WORKER"

func workerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	args := append([]string{"worker"}, strings.Fields(os.Getenv("PROJECTOR_BILLING_TEST_ARGS"))...)
	if err := run(ctx, args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "billing worker:", err)
		return 1
	}
	return 0
}

// TestWorkerReplicasSurviveSIGKILL appends a month of 1,000 MaLo streams
// (with corrections and retroactive moves between balance groups) to a
// real Kafka topic, runs three "billing worker" processes configured by
// environment as the Helm chart does, SIGKILLs one mid-run and starts
// another, and checks that the read model in Redis equals the expected
// totals exactly, that a worker serves /readyz, /metrics and a status with
// lag 0, and that SIGTERM stops the workers cleanly.
func TestWorkerReplicasSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("a full month through three worker processes")
	}
	// A bound for the whole test, not a speed requirement: under -race,
	// with the other packages' tests beside it on 2 cores, the month
	// projects at about 500 events/s.
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	kafka := testenv.Kafka(t)
	redisEnv := testenv.Redis(t)
	if kafka.Kind != testenv.KindEnv || redisEnv.Kind != testenv.KindEnv {
		if testenv.RequireReal() {
			t.Fatal("worker processes need servers given by environment (scripts/test.sh, or eval \"$(bash scripts/infra.sh env)\")")
		}
		t.Skipf("worker processes need servers given by environment, not %s/%s", kafka.Kind, redisEnv.Kind)
	}
	topic := kafka.TopicName(t, "mabis")
	events, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: kafka.Seeds, Topic: topic, Partitions: 6, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	month, _ := mabis.ParseMonth("2026-03")
	o := options{tenant: "netz-replicas", month: month, projection: mabis.ProjectionName, namespace: redisEnv.Prefix(t),
		brokers: kafka.Seeds, topic: topic, group: fmt.Sprintf("billing-replicas-%d", time.Now().UnixNano())}
	group := o.groupName() // a consumer group is cluster-wide: one of its own per test
	start := time.Now()
	want, stats, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: o.tenant, Month: month, MaLos: 1000, Seed: 11, Concurrency: 32})
	if err != nil {
		t.Fatal(err)
	}
	if want.Corrections == 0 || want.RetroactiveChanges == 0 {
		t.Fatalf("the month lacks corrections or moves: %+v", want)
	}
	t.Logf("appended %d streams, %d events in %v", stats.Streams, stats.Events, time.Since(start).Round(time.Millisecond))
	rm, err := openReadModel(o, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := kafkaAdmin(o)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	type proc struct {
		cmd *exec.Cmd
		out *syncBuffer
	}
	startWorker := func() proc {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envWorkerProcess+"=1",
			"PROJECTOR_KAFKA_BROKERS="+strings.Join(kafka.Seeds, ","), "PROJECTOR_TOPIC="+topic,
			"PROJECTOR_PROJECTION="+o.projection, "PROJECTOR_GROUP="+group, "PROJECTOR_REDIS_URL=redis://"+redisEnv.Addr,
			"PROJECTOR_REDIS_NAMESPACE="+o.namespace, "PROJECTOR_HTTP_ADDR=127.0.0.1:0",
			"PROJECTOR_SHUTDOWN_TIMEOUT=20s", "PROJECTOR_KAFKA_SESSION_TIMEOUT=6s", "PROJECTOR_LOG_LEVEL=warn", "OTEL_SDK_DISABLED=false")
		p := proc{cmd: cmd, out: &syncBuffer{}}
		cmd.Stdout, cmd.Stderr = p.out, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procs := []proc{startWorker(), startWorker(), startWorker()}
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_, _ = p.cmd.Process.Wait()
		}
	})
	total := int64(stats.Events)
	waitLag := func(below int64) {
		t.Helper()
		for {
			lag, _, err := groupLag(ctx, adm, group, topic)
			if err == nil && lag <= below {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("lag %d (%v), waiting for at most %d: %v", lag, err, below, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	projectStart := time.Now()
	waitLag(total * 2 / 3)
	if err := procs[0].cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no commit
		t.Fatal(err)
	}
	_, _ = procs[0].cmd.Process.Wait()
	t.Logf("killed a worker after %v", time.Since(projectStart).Round(time.Millisecond))
	procs[0] = startWorker()
	waitLag(0)
	t.Logf("lag 0 after %v (%.0f events/s)", time.Since(projectStart).Round(time.Millisecond), float64(total)/time.Since(projectStart).Seconds())
	if err := want.Verify(ctx, rm.reader); err != nil {
		t.Fatal(err)
	}
	if parked, err := rm.store.Parked(ctx, o.projection); err != nil || len(parked) > 0 {
		t.Errorf("parked streams %v, %v", parked, err)
	}

	// One worker's HTTP server: probes, metrics and the status.
	var base string
	for base == "" {
		if m := regexp.MustCompile(`on (http://\S+)`).FindStringSubmatch(procs[1].out.String()); m != nil {
			base = m[1]
		} else if ctx.Err() != nil {
			t.Fatalf("no URL from the worker: %q", procs[1].out.String())
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for path, want := range map[string]string{"/readyz": "", "/healthz": "", "/metrics": "# TYPE", "/api/v1/status": `"total_lag":0`} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s, want 200 with %q", path, resp.StatusCode, body, want)
		}
	}

	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range procs {
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker %d after SIGTERM: %v", i, err)
			}
		case <-time.After(25 * time.Second):
			t.Errorf("worker %d did not stop within PROJECTOR_SHUTDOWN_TIMEOUT", i)
		}
	}
}
