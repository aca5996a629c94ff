package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// clearOTELEnv empties every OTEL_* variable for the test, so that the developer's or the
// CI's environment does not leak in. Empty counts as unset for Setup and the exporters.
func clearOTELEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "")
		}
	}
}

func setup(t *testing.T, opts Options) *Telemetry {
	t.Helper()
	tel, err := Setup(t.Context(), opts)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}

func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.PrometheusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestSetupWithoutEnvironmentRecordsAndServesPrometheus(t *testing.T) {
	clearOTELEnv(t)
	tel := setup(t, Options{ServiceName: "projector-test"})

	counter, err := tel.MeterProvider().Meter("test").Int64Counter("projector.test.events")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 3)
	// No trace exporter: nothing would receive a span, none is recorded.
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	if span.IsRecording() {
		t.Error("a span is recorded without a trace exporter")
	}
	span.End()

	body := scrape(t, tel)
	if !strings.Contains(body, "projector_test_events_total{") || !strings.Contains(body, "} 3\n") {
		t.Errorf("scrape has no projector_test_events_total 3:\n%s", body)
	}
	if !strings.Contains(body, `service_name="projector-test"`) {
		t.Errorf("scrape has no target_info with the service name:\n%s", body)
	}
}

func TestSDKDisabledIsNoop(t *testing.T) {
	clearOTELEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "TRUE")
	// Set, but must not matter: nothing is exported and nothing is validated.
	t.Setenv("OTEL_TRACES_EXPORTER", "bogus")
	tel := setup(t, Options{ServiceName: "projector-test"})

	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	if span.IsRecording() {
		t.Error("span is recording with OTEL_SDK_DISABLED=true")
	}
	span.End()
	counter, err := tel.MeterProvider().Meter("test").Int64Counter("projector.test.events")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 1)
	if body := scrape(t, tel); strings.Contains(body, "projector_test_events") {
		t.Errorf("disabled SDK exposes metrics:\n%s", body)
	}
}

// otlpHTTPServer is a minimal OTLP/HTTP receiver that keeps the span names it is sent.
type otlpHTTPServer struct {
	*httptest.Server
	mu        sync.Mutex
	spans     []string
	services  []string
	metricHit int
}

func newOTLPHTTPServer(t *testing.T) *otlpHTTPServer {
	s := &otlpHTTPServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("OTLP server: bad trace request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					s.services = append(s.services, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					s.spans = append(s.spans, sp.GetName())
				}
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		// An empty ExportTraceServiceResponse encodes to zero bytes.
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.metricHit++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestOTLPHTTPExportOnShutdown(t *testing.T) {
	clearOTELEnv(t)
	srv := newOTLPHTTPServer(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")

	tel, err := Setup(t.Context(), Options{ServiceName: "from-options"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "append")
	span.End()
	counter, _ := tel.MeterProvider().Meter("test").Int64Counter("projector.test.events")
	counter.Add(t.Context(), 1)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}

	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !slices.Equal(srv.spans, []string{"append"}) {
		t.Errorf("exported spans %q, want [append]", srv.spans)
	}
	if !slices.Equal(srv.services, []string{"from-env"}) {
		t.Errorf("exported service.name %q, want [from-env] (OTEL_SERVICE_NAME wins)", srv.services)
	}
	if srv.metricHit == 0 {
		t.Error("no metrics were exported on Shutdown")
	}
}

func TestConsoleExporter(t *testing.T) {
	clearOTELEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	var out bytes.Buffer
	tel, err := Setup(t.Context(), Options{ServiceName: "projector-test", ConsoleWriter: &out})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "console-span")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Name":"console-span"`) {
		t.Errorf("console output has no span:\n%s", out.String())
	}
}

func TestInvalidEnvironmentNamesTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		vars []string // every variable the error must name
	}{
		{"unknown protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, []string{"OTEL_EXPORTER_OTLP_PROTOCOL"}},
		{"http/json", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}},
		{"unknown traces exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, []string{"OTEL_TRACES_EXPORTER"}},
		{"prometheus is metrics only", map[string]string{"OTEL_TRACES_EXPORTER": "prometheus"}, []string{"OTEL_TRACES_EXPORTER"}},
		{"unknown metrics exporter", map[string]string{"OTEL_METRICS_EXPORTER": "otlp,statsd"}, []string{"OTEL_METRICS_EXPORTER"}},
		{"none with others", map[string]string{"OTEL_METRICS_EXPORTER": "none,console"}, []string{"OTEL_METRICS_EXPORTER"}},
		{"unknown sampler", map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, []string{"OTEL_TRACES_SAMPLER"}},
		{"bad ratio", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, []string{"OTEL_TRACES_SAMPLER_ARG"}},
		{"bad resource attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, []string{"OTEL_RESOURCE_ATTRIBUTES"}},
		{"all reported at once", map[string]string{"OTEL_TRACES_EXPORTER": "x", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "y"},
			[]string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTELEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(t.Context(), Options{})
			if err == nil {
				_ = tel.Shutdown(t.Context())
				t.Fatal("Setup succeeded")
			}
			for _, v := range tt.vars {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("error does not name %s: %v", v, err)
				}
			}
			envErr, ok := errors.AsType[*EnvError](err)
			if !ok || !slices.Contains(tt.vars, envErr.Var) {
				t.Errorf("error is not an *EnvError for %v: %#v", tt.vars, err)
			}
		})
	}
}

func TestReadEnv(t *testing.T) {
	tests := []struct {
		name                   string
		env                    map[string]string
		traces, metrics        []string
		traceProto, metricProt string
	}{
		{"nothing set", nil, nil, nil, "http/protobuf", "http/protobuf"},
		{"endpoint means otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"},
			[]string{"otlp"}, []string{"otlp"}, "http/protobuf", "http/protobuf"},
		{"per-signal endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"},
			[]string{"otlp"}, nil, "http/protobuf", "http/protobuf"},
		{"per-signal protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"},
			nil, nil, "grpc", "http/protobuf"},
		{"lists", map[string]string{"OTEL_TRACES_EXPORTER": "OTLP, console,otlp", "OTEL_METRICS_EXPORTER": "prometheus,console"},
			[]string{"otlp", "console"}, []string{"console"}, "http/protobuf", "http/protobuf"},
		{"none beats endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"},
			nil, []string{"otlp"}, "http/protobuf", "http/protobuf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := readEnv(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.traceExporters, tt.traces) || !slices.Equal(cfg.metricExporters, tt.metrics) {
				t.Errorf("exporters: traces %q metrics %q, want %q %q", cfg.traceExporters, cfg.metricExporters, tt.traces, tt.metrics)
			}
			if cfg.traceProtocol != tt.traceProto || cfg.metricProtocol != tt.metricProt {
				t.Errorf("protocols: %q %q, want %q %q", cfg.traceProtocol, cfg.metricProtocol, tt.traceProto, tt.metricProt)
			}
		})
	}
}

func TestSetGlobal(t *testing.T) {
	clearOTELEnv(t)
	prevTP, prevMP, prevProp := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
		otel.SetTextMapPropagator(prevProp)
	})

	tel := setup(t, Options{ServiceName: "projector-test"})
	if otel.GetTracerProvider() == tel.TracerProvider() {
		t.Fatal("Setup without SetGlobal installed the global tracer provider")
	}
	// Without an exporter the tracer provider is a no-op one: nothing would
	// receive the spans, and components that trace skip the work.
	if _, ok := tel.TracerProvider().(tracenoop.TracerProvider); !ok {
		t.Errorf("without a trace exporter the tracer provider is %T, want a no-op one", tel.TracerProvider())
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	tel = setup(t, Options{ServiceName: "projector-test", SetGlobal: true, ConsoleWriter: io.Discard})
	if otel.GetTracerProvider() != tel.TracerProvider() || otel.GetMeterProvider() != tel.MeterProvider() {
		t.Error("SetGlobal did not install the providers")
	}
	carrier := propagation.MapCarrier{}
	ctx, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "x")
	defer span.End()
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	if carrier.Get("traceparent") == "" {
		t.Errorf("global propagator injected no traceparent: %v", carrier)
	}
}

// A scrape shows from the start which build runs and the Go runtime and
// process series, before any projection recorded anything.
func TestPrometheusShowsBuildRuntimeAndProcess(t *testing.T) {
	clearOTELEnv(t)
	body := scrape(t, setup(t, Options{ServiceName: "projector-test"}))
	for _, want := range []string{`projector_build_info{goversion="go`, `service="projector-test"`, "go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %q", want)
		}
	}
}
