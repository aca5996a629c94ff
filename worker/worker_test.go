package worker

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
)

// syncBuffer is an io.Writer safe for the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clearEnv unsets every PROJECTOR_* variable of the table for the test.
func clearEnv(t *testing.T) {
	for _, v := range projectorconfig.Worker() {
		t.Setenv(v.Env, "")
	}
	t.Setenv("OTEL_SDK_DISABLED", "true")
}

func noSetup(context.Context, *Worker) (Projection, error) {
	return Projection{}, errors.New("setup must not run")
}

func TestUsageErrors(t *testing.T) {
	clearEnv(t)
	t.Setenv("PROJECTOR_KAFKA_TLS", "maybe")
	t.Setenv("PROJECTOR_REDIS_PASSWORD", "s3cr3t")
	var stderr syncBuffer
	err := Run(t.Context(), []string{"worker", "-shutdown-timeout", "soon"}, Options{Setup: noSetup, Stderr: &stderr, Stdout: io.Discard})
	var usage *UsageError
	if !errors.As(err, &usage) {
		t.Fatalf("Run = %v, want a *UsageError", err)
	}
	for _, want := range []string{"no Kafka", "no Redis", "no topic", "no projection name", `PROJECTOR_KAFKA_TLS="maybe"`, `-shutdown-timeout "soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error()+stderr.String(), "s3cr3t") {
		t.Error("the password shows")
	}
	if err := Run(t.Context(), []string{"extra"}, Options{Setup: noSetup, Stderr: &stderr}); !errors.As(err, &usage) || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("extra argument: %v", err)
	}
	if err := Run(t.Context(), nil, Options{Setup: noSetup, Stderr: &stderr, Defaults: map[string]string{"PROJECTOR_NOPE": "x"}}); err == nil || !strings.Contains(err.Error(), "PROJECTOR_NOPE") {
		t.Errorf("unknown default: %v", err)
	}
}

func TestHelp(t *testing.T) {
	clearEnv(t)
	t.Setenv("PROJECTOR_KAFKA_PASSWORD", "s3cr3t")
	t.Setenv("PROJECTOR_REDIS_URL", "redis://u:s3cr3t@redis:6379/0")
	var stderr syncBuffer
	tenant := projectorconfig.Var{Env: "PROJECTOR_TENANT", Flag: "tenant", Default: "acme", Help: "tenant"}
	err := Run(t.Context(), []string{"-h"}, Options{Name: "orders", Setup: noSetup, Stderr: &stderr, Vars: []projectorconfig.Var{tenant},
		Defaults: map[string]string{"PROJECTOR_TOPIC": "shop.orders"}})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := stderr.String()
	for _, want := range []string{"usage: orders [worker]", "-brokers", "(PROJECTOR_KAFKA_BROKERS)", "-tenant", "(default acme)", "(default shop.orders)", "(from PROJECTOR_REDIS_URL)"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "s3cr3t") || strings.Contains(help, "-kafka-password") {
		t.Errorf("help shows a password or its flag:\n%s", help)
	}
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestRunInProcess runs a worker on an in-process Kafka (kfake) and Redis
// (miniredis): it serves /healthz, /readyz once it joined the group,
// /metrics and a handler of its own, applies what is on the topic, and
// stops cleanly when its context ends.
func TestRunInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a worker")
	}
	clearEnv(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	// A planted password: it must not show in any output (logs, help,
	// usage errors, /healthz, /readyz, /metrics, the program's handlers).
	const planted = "pl4nted-s3cr3t"
	mr := miniredis.RunT(t)
	mr.RequireAuth(planted)
	t.Setenv("PROJECTOR_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("PROJECTOR_REDIS_URL", "redis://"+mr.Addr())
	t.Setenv("PROJECTOR_REDIS_PASSWORD", planted)
	t.Setenv("PROJECTOR_KAFKA_PASSWORD", planted)
	t.Setenv("PROJECTOR_CONSOLE", "on")
	t.Setenv("PROJECTOR_CONSOLE_ADMIN_TOKEN", planted)
	t.Setenv("PROJECTOR_KAFKA_TLS", "off")
	t.Setenv("PROJECTOR_SHUTDOWN_TIMEOUT", "10s")
	t.Setenv("PROJECTOR_KAFKA_SESSION_TIMEOUT", "6s")
	t.Setenv("PROJECTOR_LOG_LEVEL", "debug")
	t.Setenv("PROJECTOR_LOG_FORMAT", "json")
	t.Setenv("OTEL_SDK_DISABLED", "false") // meters recorded, served on /metrics; nothing exported

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// The topics as a writer creates them (the runner does not create them).
	events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cluster.ListenAddrs(), Topic: "shop.orders", Partitions: 2, ReplicationFactor: 1, Guard: appendguard.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()

	var stdout, stderr syncBuffer
	var setupRan, deferred bool
	opts := Options{
		Name:     "orders",
		Defaults: map[string]string{"PROJECTOR_PROJECTION": "orders", "PROJECTOR_TOPIC": "shop.orders"},
		Stdout:   &stdout, Stderr: &stderr,
		Setup: func(ctx context.Context, w *Worker) (Projection, error) {
			setupRan = true
			w.Defer(func() { deferred = true })
			if w.Config.Projection != "orders" || w.Config.ConsumerGroup() != "orders" || w.Store == nil || w.Redis == nil {
				t.Errorf("Setup got %+v", w.Config)
			}
			w.Handle("GET /api/hello", http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(rw, "hello from "+w.ReplicaID())
			}))
			p, err := w.Store.NewAtomicProjection(w.Config.Projection, func(framework.Event, *redischeckpoint.Writes) error { return nil })
			if err != nil {
				return Projection{}, err
			}
			return Versioned(p), nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"worker", "-http", "127.0.0.1:0"}, opts) }()

	var base string
	for addr := regexp.MustCompile(`on (http://\S+)`); base == ""; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the worker ended early: %v\n%s", err, stderr.String())
		default:
		}
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
	}
	if !setupRan {
		t.Error("Setup did not run")
	}
	var served strings.Builder // every body served, for the planted password
	if code, body, err := get(ctx, base+"/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz: %d %s %v", code, body, err)
	} else {
		served.WriteString(body)
	}
	for {
		select {
		case err := <-done:
			t.Fatalf("the worker ended: %v\n%s", err, stderr.String())
		default:
		}
		code, body, err := get(ctx, base+"/readyz")
		served.WriteString(body)
		if err == nil && code == 200 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("/readyz never ready: %d %s %v\n%s", code, body, err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body, err := get(ctx, base+"/metrics"); err != nil || code != 200 || !strings.Contains(body, "# TYPE") {
		t.Errorf("/metrics: %d %v\n%.300s", code, err, body)
	} else {
		served.WriteString(body)
	}
	for _, page := range []string{"/console/", "/console/parked", "/console/login"} {
		if code, body, err := get(ctx, base+page); err != nil || code != 200 || !strings.Contains(body, "Projector console") {
			t.Errorf("%s: %d %v\n%.300s", page, code, err, body)
		} else {
			served.WriteString(body)
		}
	}
	if !strings.Contains(stdout.String(), "console on "+base+"/console/") {
		t.Errorf("the start lines do not name the console:\n%s", stdout.String())
	}
	if code, body, err := get(ctx, base+"/api/hello"); err != nil || code != 200 || !strings.HasPrefix(body, "hello from ") || body == "hello from " {
		t.Errorf("/api/hello: %d %q %v", code, body, err)
	}

	stop := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after the signal: %v\n%s", err, stderr.String())
		}
		if !deferred {
			t.Error("a Defer did not run")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop")
	}
	t.Logf("stopped in %v", time.Since(stop).Round(time.Millisecond))

	// Help and a usage error, with the same settings.
	var help, usage syncBuffer
	_ = Run(t.Context(), []string{"-h"}, Options{Name: "orders", Setup: opts.Setup, Stdout: &help, Stderr: &help})
	err = Run(t.Context(), []string{"-no-such-flag"}, Options{Name: "orders", Setup: opts.Setup, Stdout: &usage, Stderr: &usage})
	for what, out := range map[string]string{"the log": stderr.String(), "stdout": stdout.String(), "what was served": served.String(),
		"help": help.String(), "the usage error": usage.String() + fmt.Sprint(err)} {
		if strings.Contains(out, planted) {
			t.Errorf("%s shows the password:\n%s", what, out)
		}
	}
	if !strings.Contains(stderr.String(), `"level":"DEBUG"`) {
		t.Errorf("the log is not JSON at debug level:\n%.500s", stderr.String())
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{":8080": "http://localhost:8080", "[::]:80": "http://localhost:80", "127.0.0.1:9": "http://127.0.0.1:9"} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNamespaceDefault keeps the table's default namespace the store's.
func TestNamespaceDefault(t *testing.T) {
	if projectorconfig.RedisNamespace.Default != redischeckpoint.DefaultNamespace {
		t.Errorf("PROJECTOR_REDIS_NAMESPACE defaults to %q, the store to %q", projectorconfig.RedisNamespace.Default, redischeckpoint.DefaultNamespace)
	}
}

func TestProjectionNeedsOneKind(t *testing.T) {
	w := &Worker{}
	if err := w.newRunner(Projection{}, kafkarunner.Config{}); err == nil {
		t.Error("an empty Projection was accepted")
	}
}

func TestVersionFlag(t *testing.T) {
	clearEnv(t)
	var stdout, stderr syncBuffer
	err := Run(t.Context(), []string{"worker", "-version"}, Options{Name: "orders", Setup: noSetup, Stdout: &stdout, Stderr: &stderr})
	if !errors.Is(err, flag.ErrHelp) || !strings.HasPrefix(stdout.String(), "orders ") || !strings.Contains(stdout.String(), "go1.") {
		t.Errorf("-version: %v, stdout %q", err, stdout.String())
	}
}

// TestCheckConfig: -check-config builds what Run builds before it
// connects and reports every problem as a usage error (exit 2), or says
// the configuration holds (exit 0); it never runs Setup nor connects.
func TestCheckConfig(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("PROJECTOR_KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("PROJECTOR_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("PROJECTOR_TOPIC", "orders")
	t.Setenv("PROJECTOR_PROJECTION", "orders")
	t.Setenv("PROJECTOR_REDIS_PASSWORD", "s3cr3t")
	var stdout, stderr syncBuffer
	err := Run(t.Context(), []string{"worker", "-check-config"}, Options{Setup: noSetup, Stdout: &stdout, Stderr: &stderr})
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "configuration ok") {
		t.Fatalf("-check-config on a good configuration: %v, stdout %q", err, stdout.String())
	}

	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	t.Setenv("PROJECTOR_LOG_FORMAT", "xml")
	t.Setenv("PROJECTOR_KAFKA_TLS_CA_FILE", t.TempDir()+"/missing-ca.pem")
	err = Run(t.Context(), []string{"worker", "-check-config"}, Options{Setup: noSetup, Stdout: &stdout, Stderr: &stderr})
	var usage *UsageError
	if !errors.As(err, &usage) {
		t.Fatalf("-check-config on a bad configuration: %v, want a *UsageError", err)
	}
	for _, want := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "missing-ca.pem", "xml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error()+stdout.String()+stderr.String(), "s3cr3t") {
		t.Error("the password shows")
	}
}
