package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestLoggerFormatsAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	logger, err := NewLogger(&buf, LogJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(t.Context(), "apply")
	logger.With("component", "runner").InfoContext(ctx, "stream parked", "stream", "process/acme/1")
	logger.Debug("not shown")
	span.End()
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %q: %v", buf.String(), err)
	}
	if rec["trace_id"] != span.SpanContext().TraceID().String() || rec["span_id"] != span.SpanContext().SpanID().String() ||
		rec["msg"] != "stream parked" || rec["component"] != "runner" {
		t.Errorf("record %v", rec)
	}
	buf.Reset()
	text, _ := NewLogger(&buf, LogText, slog.LevelInfo)
	text.Info("outside a span")
	if out := buf.String(); !strings.Contains(out, `msg="outside a span"`) || strings.Contains(out, "trace_id") {
		t.Errorf("text record %q", out)
	}
	if _, err := NewLogger(&buf, "yaml", slog.LevelInfo); err == nil {
		t.Error("format yaml accepted")
	}
}
