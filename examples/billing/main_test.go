package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/kafkastore"
)

// syncBuffer is an io.Writer safe for the demo's goroutines.
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

// TestDemo runs the demo end to end on its in-process Kafka and Redis with
// a small month, checks that it reports the read model equal to the
// expected totals, asks its API, and stops it.
func TestDemo(t *testing.T) {
	t.Setenv("PROJECTOR_KAFKA_BROKERS", "")
	t.Setenv("PROJECTOR_REDIS_URL", "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-malos", "25", "-month", "2026-10", "-http", "127.0.0.1:0", "-partitions", "3"}, &out, &errOut)
	}()
	url := regexp.MustCompile(`http://\S+/api/v1/status`)
	var status string
	for status == "" {
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-time.After(50 * time.Millisecond):
			status = url.FindString(out.String())
		}
	}
	if !strings.Contains(out.String(), "the read model equals the expected totals") {
		t.Errorf("the demo did not report equal totals:\n%s", out.String())
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, status, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		State    string `json:"state"`
		TotalLag int64  `json:"total_lag"`
		Replicas []struct {
			ID string `json:"id"`
		} `json:"replicas"`
		Local struct {
			State   string `json:"state"`
			Applied int64  `json:"applied"`
		} `json:"local"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	// The projection as projectorctl status shows it (three replicas
	// reporting, lag 0), and the demo's own word for its state.
	if err != nil || st.State != "running" || st.TotalLag != 0 || len(st.Replicas) != 3 || st.Local.State != "live" || st.Local.Applied == 0 {
		t.Errorf("status %+v, %v", st, err)
	}
	// The console, whose URL the demo prints, and /metrics.
	consoleURL := regexp.MustCompile(`console: (http://\S+/console/)`).FindStringSubmatch(out.String())
	if consoleURL == nil {
		t.Fatalf("the demo does not print the console's URL:\n%s", out.String())
	}
	base := strings.TrimSuffix(consoleURL[1], "/console/")
	for path, want := range map[string]string{
		"/":                     "Projections", // redirected to the console
		"/console/":             `<tr class="replica">`,
		"/console/parked":       "no parked stream",
		"/console/billing/":     "2980 quarter hours",
		"/console/billing/malo": "MaLo-ID",
		"/metrics":              "projector_events_applied",
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want %q in\n%.2000s", path, resp.StatusCode, want, body)
		}
		if path == "/console/" && strings.Count(string(body), `<tr class="replica">`) != 3 {
			t.Errorf("the console shows %d replicas, want 3", strings.Count(string(body), `<tr class="replica">`))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo after interrupt: %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Setenv("PROJECTOR_MALOS", "17")
	t.Setenv("PROJECTOR_KAFKA_BROKERS", "a:9092, b:9092")
	o, err := parseFlags("generate", []string{"-month", "2026-10"}, &syncBuffer{})
	if err != nil || o.malos != 17 || o.month.String() != "2026-10" || len(o.brokers) != 2 || o.topic != "mabis.process-events" || o.projection != "billing" {
		t.Errorf("parseFlags = %+v, %v", o, err)
	}
	_, err = parseFlags("demo", []string{"-month", "2026-13", "-malos", "x"}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "-month") || !strings.Contains(err.Error(), "-malos") {
		t.Errorf("bad flags: %v, want both named", err)
	}
	t.Setenv("PROJECTOR_REDIS_WAIT_REPLICAS", "1")
	if o, err := parseFlags("worker", nil, &syncBuffer{}); err != nil || o.waitReplicas != 1 {
		t.Errorf("PROJECTOR_REDIS_WAIT_REPLICAS=1: waitReplicas %d, %v", o.waitReplicas, err)
	}
	if _, err := parseFlags("worker", []string{"-redis-wait-replicas", "-1"}, &syncBuffer{}); err == nil || !strings.Contains(err.Error(), "-redis-wait-replicas") {
		t.Errorf("-redis-wait-replicas -1: %v, want it named", err)
	}
	if err := run(t.Context(), []string{"frobnicate"}, &syncBuffer{}, &syncBuffer{}); err == nil {
		t.Error("an unknown command ran")
	}
}

// TestWorkerInProcess runs "billing worker" (the worker runtime with the
// billing projection and API) on an in-process Kafka and Redis, configured
// by the PROJECTOR_* variables as in the Helm chart: it applies a generated
// month, serves the API, /healthz, /readyz and /metrics, and stops cleanly
// when its context ends (SIGTERM in main).
func TestWorkerInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a worker")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	mr := miniredis.RunT(t)
	for k, v := range map[string]string{
		"PROJECTOR_KAFKA_BROKERS": strings.Join(cluster.ListenAddrs(), ","), "PROJECTOR_REDIS_URL": "redis://" + mr.Addr(),
		"PROJECTOR_TOPIC": "billing.worker-test", "PROJECTOR_PARTITIONS": "2", "PROJECTOR_MALOS": "5", "PROJECTOR_MONTH": "2026-10",
		"PROJECTOR_TENANT": "netz-worker", "PROJECTOR_HTTP_ADDR": "127.0.0.1:0", "PROJECTOR_SHUTDOWN_TIMEOUT": "10s",
		"PROJECTOR_KAFKA_SESSION_TIMEOUT": "6s", "PROJECTOR_KAFKA_TLS": "no", "PROJECTOR_LOG_LEVEL": "warn", "OTEL_SDK_DISABLED": "true",
		"PROJECTOR_CONSOLE": "true",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"generate"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	workerCtx, stop := context.WithCancel(ctx)
	defer stop()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(workerCtx, []string{"worker"}, &out, &errOut) }()
	var base string
	for addr := regexp.MustCompile(`on (http://\S+)`); base == ""; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the worker ended early: %v\n%s", err, errOut.String())
		default:
		}
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for {
		code, body := get("/api/v1/status")
		var st struct {
			State    string `json:"state"`
			TotalLag int64  `json:"total_lag"`
			Error    string `json:"error"`
			Local    struct {
				Applied int64 `json:"applied"`
			} `json:"local"`
		}
		if code == 200 && json.Unmarshal(body, &st) == nil && st.Error == "" && st.Local.Applied > 0 && st.TotalLag == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the worker did not catch up: %d %s\n%s", code, body, errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/months/2026-10/balance-groups", "/console/", "/console/billing/?month=2026-10"} {
		if code, body := get(path); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	// A MaLo's page shows its stream's events, read from the topic.
	store, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cluster.ListenAddrs(), Topic: "billing.worker-test", DontCreateTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var malo string
	for id, err := range store.ListStreams(ctx, "process/netz-worker/") {
		if err != nil {
			t.Fatal(err)
		}
		if _, m, _, err := mabis.ParseStreamID(id); err == nil {
			malo = m
			break
		}
	}
	if code, body := get("/console/billing/malo?month=2026-10&malo=" + malo); code != 200 || !bytes.Contains(body, []byte(`class="event kind-`)) {
		t.Errorf("MaLo %q page: %d, want 200 with the stream's events\n%s", malo, code, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("worker after the signal: %v\n%s", err, errOut.String())
	}
}
