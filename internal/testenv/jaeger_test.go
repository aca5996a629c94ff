package testenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/telemetry"
)

// TestJaegerReceivesOTLP sends a small trace (a parent, a child, and a span linked to the
// parent) through the telemetry package to the scripts' Jaeger, over each OTLP protocol, and
// reads it back through the query API.
func TestJaegerReceivesOTLP(t *testing.T) {
	j := testenv.Jaeger(t)
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			var suffix [4]byte
			_, _ = rand.Read(suffix[:])
			service := "testenv-jaeger-" + hex.EncodeToString(suffix[:])

			j.SetOTLPEnv(t, protocol)
			t.Setenv("OTEL_SDK_DISABLED", "")
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_METRICS_EXPORTER", "none")
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			t.Setenv("OTEL_SERVICE_NAME", "")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")

			tel, err := telemetry.Setup(t.Context(), telemetry.Options{ServiceName: service})
			if err != nil {
				t.Fatal(err)
			}
			tracer := tel.TracerProvider().Tracer("testenv")
			ctx, parent := tracer.Start(t.Context(), "append")
			_, child := tracer.Start(ctx, "apply", trace.WithAttributes(attribute.String("projector.stream", "s-1")))
			child.End()
			parent.End()
			_, linked := tracer.Start(context.Background(), "read-model",
				trace.WithLinks(trace.Link{SpanContext: parent.SpanContext()}))
			linked.End()

			shutdownCtx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := tel.Shutdown(shutdownCtx); err != nil {
				t.Fatalf("Shutdown (export to %s): %v", protocol, err)
			}

			traces := j.WaitTraces(t, service, 10*time.Minute, func(ts []testenv.Trace) bool {
				n := 0
				for _, tr := range ts {
					n += len(tr.Spans)
				}
				return n >= 3
			})
			wantTrace := testenv.NormalizeID(parent.SpanContext().TraceID().String())
			var appendTrace testenv.Trace
			for _, tr := range traces {
				if testenv.NormalizeID(tr.TraceID) == wantTrace {
					appendTrace = tr
				}
			}
			apply, ok := appendTrace.SpanByName("apply")
			if !ok {
				t.Fatalf("trace %s has no apply span: %+v", wantTrace, traces)
			}
			if apply.ServiceName != service {
				t.Errorf("apply: service %q, want %q", apply.ServiceName, service)
			}
			if got := apply.Tags["projector.stream"]; got != "s-1" {
				t.Errorf("apply: tag projector.stream = %v, want s-1 (tags %v)", got, apply.Tags)
			}
			parentID := parent.SpanContext().SpanID().String()
			if len(apply.References) != 1 || apply.References[0].RefType != "CHILD_OF" || apply.References[0].SpanID != parentID {
				t.Errorf("apply: references %+v, want CHILD_OF %s", apply.References, parentID)
			}

			var readModel testenv.Span
			for _, tr := range traces {
				if s, ok := tr.SpanByName("read-model"); ok {
					readModel = s
				}
			}
			var linkedToParent bool
			for _, r := range readModel.References {
				linkedToParent = linkedToParent || (r.RefType == "FOLLOWS_FROM" && r.SpanID == parentID &&
					testenv.NormalizeID(r.TraceID) == wantTrace)
			}
			if !linkedToParent {
				t.Errorf("read-model: references %+v, want FOLLOWS_FROM %s (the span link)", readModel.References, parentID)
			}
		})
	}
}
