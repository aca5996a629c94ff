package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables for the Jaeger of scripts/test.sh and scripts/infra.sh.
const (
	EnvOTLPGRPCEndpoint = "PROJECTOR_OTLP_GRPC_ENDPOINT" // host:port of its OTLP/gRPC receiver
	EnvOTLPHTTPEndpoint = "PROJECTOR_OTLP_HTTP_ENDPOINT" // http://host:port of its OTLP/HTTP receiver
	EnvJaegerQueryURL   = "PROJECTOR_JAEGER_QUERY_URL"   // http://host:port of its query API and UI
	EnvNoJaeger         = "PROJECTOR_NO_JAEGER"          // 1: the scripts did not start Jaeger
)

// JaegerEnv is the Jaeger v2 that scripts/test.sh runs: an OTLP receiver in front of an
// in-memory trace store, and the query API to read the traces back. It is shared by every
// test (and every test binary): isolate by service name.
type JaegerEnv struct {
	OTLPGRPC string // host:port, for an OTLP/gRPC exporter (insecure)
	OTLPHTTP string // http://host:port, the OTEL_EXPORTER_OTLP_ENDPOINT for OTLP/HTTP
	QueryURL string // http://host:port of the query API (/api/...) and the UI
}

var (
	jaegerOnce sync.Once
	jaegerErr  error
)

// Jaeger returns the Jaeger named by PROJECTOR_OTLP_GRPC_ENDPOINT, PROJECTOR_OTLP_HTTP_ENDPOINT
// and PROJECTOR_JAEGER_QUERY_URL. There is no fake for it: without those variables the test is
// skipped, or fails when RequireReal is set (unless PROJECTOR_NO_JAEGER=1 and CI is not true).
// A Jaeger named there whose query API does not answer fails the test.
func Jaeger(t testing.TB) *JaegerEnv {
	t.Helper()
	env := &JaegerEnv{
		OTLPGRPC: os.Getenv(EnvOTLPGRPCEndpoint),
		OTLPHTTP: os.Getenv(EnvOTLPHTTPEndpoint),
		QueryURL: strings.TrimSuffix(os.Getenv(EnvJaegerQueryURL), "/"),
	}
	if env.OTLPGRPC == "" || env.OTLPHTTP == "" || env.QueryURL == "" {
		missing := fmt.Sprintf("%s, %s and %s are not all set", EnvOTLPGRPCEndpoint, EnvOTLPHTTPEndpoint, EnvJaegerQueryURL)
		switch {
		case os.Getenv(EnvNoJaeger) == "1" && !strings.EqualFold(os.Getenv("CI"), "true"):
			t.Skipf("testenv: no Jaeger (%s=1)", EnvNoJaeger)
		case RequireReal():
			t.Fatalf("testenv: a Jaeger is required (%s) but %s: run the tests with scripts/test.sh "+
				"(builds and starts Jaeger, Kafka and Redis), or `scripts/infra.sh up` and export what it prints",
				requireRealWhy(), missing)
		default:
			t.Skipf("testenv: no Jaeger (%s; scripts/test.sh starts one)", missing)
		}
	}
	jaegerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		jaegerErr = env.ping(ctx)
	})
	if jaegerErr != nil {
		t.Fatalf("testenv: %s=%s does not answer: %v", EnvJaegerQueryURL, env.QueryURL, jaegerErr)
	}
	return env
}

func (e *JaegerEnv) ping(ctx context.Context) error {
	var last error
	for {
		var services struct{ Data []string }
		if last = e.get(ctx, "/api/services", nil, &services); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SetOTLPEnv points the standard OTEL_EXPORTER_OTLP_* variables at this Jaeger for the rest of
// the test, over OTLP/HTTP (protocol "http/protobuf") or OTLP/gRPC ("grpc"), and clears the
// per-signal endpoint and protocol variables that would override them. Like t.Setenv it
// cannot be used in parallel tests.
func (e *JaegerEnv) SetOTLPEnv(t testing.TB, protocol string) {
	t.Helper()
	endpoint := e.OTLPHTTP
	switch protocol {
	case "http/protobuf":
	case "grpc":
		// The scheme tells the gRPC exporter to connect without TLS.
		endpoint = "http://" + e.OTLPGRPC
	default:
		t.Fatalf("testenv: SetOTLPEnv: unknown protocol %q (want grpc or http/protobuf)", protocol)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		t.Setenv(name, "")
	}
}

// Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	TraceID string
	Spans   []Span
}

// Span is a span of a Trace. IDs are lowercase hex as Jaeger prints them (a trace ID whose high
// 64 bits are zero comes as 16 digits; compare with NormalizeID).
type Span struct {
	TraceID       string
	SpanID        string
	OperationName string
	ServiceName   string // service.name of the process that sent the span
	References    []SpanRef
	Tags          map[string]any // span attributes (and a few Jaeger adds, e.g. span.kind, otel.scope.name)
	StartTime     time.Time
	Duration      time.Duration
}

// SpanRef is a reference from a span: Jaeger shows the parent as CHILD_OF and OpenTelemetry
// span links as FOLLOWS_FROM.
type SpanRef struct {
	RefType string // "CHILD_OF" or "FOLLOWS_FROM"
	TraceID string
	SpanID  string
}

// SpanByName returns the first span of the trace with the given operation name.
func (tr Trace) SpanByName(operation string) (Span, bool) {
	for _, s := range tr.Spans {
		if s.OperationName == operation {
			return s, true
		}
	}
	return Span{}, false
}

// NormalizeID strips leading zeros so that IDs from OpenTelemetry (trace.TraceID.String(),
// always 32 digits) and from Jaeger compare equal.
func NormalizeID(id string) string {
	id = strings.TrimLeft(strings.ToLower(id), "0")
	if id == "" {
		return "0"
	}
	return id
}

// FindTraces returns the traces with a span of service that started within lookback, newest
// first as Jaeger orders them (at most 1000). It does not wait: spans reach the store a little
// after the exporter flushed them, so poll (or use WaitTraces). An unknown service is no
// error: the result is empty.
func (e *JaegerEnv) FindTraces(t testing.TB, service string, lookback time.Duration) ([]Trace, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := time.Now()
	q := url.Values{
		"service": {service},
		"start":   {strconv.FormatInt(end.Add(-lookback).UnixMicro(), 10)},
		"end":     {strconv.FormatInt(end.Add(time.Minute).UnixMicro(), 10)}, // a little clock skew
		"limit":   {"1000"},
	}
	var resp jaegerTracesResponse
	if err := e.get(ctx, "/api/traces", q, &resp); err != nil {
		return nil, err
	}
	if len(resp.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: /api/traces?service=%s: %v", service, resp.Errors)
	}
	traces := make([]Trace, 0, len(resp.Data))
	for _, jt := range resp.Data {
		tr := Trace{TraceID: jt.TraceID}
		for _, js := range jt.Spans {
			s := Span{
				TraceID:       js.TraceID,
				SpanID:        js.SpanID,
				OperationName: js.OperationName,
				ServiceName:   jt.Processes[js.ProcessID].ServiceName,
				StartTime:     time.UnixMicro(js.StartTime),
				Duration:      time.Duration(js.Duration) * time.Microsecond,
				Tags:          make(map[string]any, len(js.Tags)),
			}
			for _, r := range js.References {
				s.References = append(s.References, SpanRef(r))
			}
			for _, kv := range js.Tags {
				s.Tags[kv.Key] = kv.Value
			}
			tr.Spans = append(tr.Spans, s)
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

// WaitTraces polls FindTraces until done accepts the traces, and fails the test with what it
// saw last when that does not happen within 30 seconds.
func (e *JaegerEnv) WaitTraces(t testing.TB, service string, lookback time.Duration, done func([]Trace) bool) []Trace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		traces, err := e.FindTraces(t, service, lookback)
		if err == nil && done(traces) {
			return traces
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: Jaeger at %s: the traces of service %q did not arrive within 30s (last: %d traces, err %v)",
				e.QueryURL, service, len(traces), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *JaegerEnv) get(ctx context.Context, path string, q url.Values, into any) error {
	u := e.QueryURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("jaeger: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("jaeger: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger: GET %s: %s: %.500s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("jaeger: GET %s: decoding: %w", path, err)
	}
	return nil
}

// The JSON of Jaeger's HTTP API (model/json in the jaeger repository), the fields used here.
type jaegerTracesResponse struct {
	Data   []jaegerTrace `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"` // microseconds since the epoch
	Duration  int64 `json:"duration"`  // microseconds
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}
