package main

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/internal/testenv"
)

// TestOneTraceInJaeger runs the billing generator and a worker, as users
// do, exporting OTLP to the Jaeger v2 that scripts/test.sh starts, and finds
// in Jaeger's query API one trace holding the append, the publish, the
// consume (receive) and the apply of the same event.
func TestOneTraceInJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Kafka, Redis and Jaeger")
	}
	jaeger := testenv.Jaeger(t)
	kafka, redisEnv := serversFromEnvironment(t)
	service := fmt.Sprintf("billing-trace-test-%d", time.Now().UnixNano())
	jaeger.SetOTLPEnv(t, "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", service)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	topic := kafka.TopicName(t, "mabis")
	ns := redisEnv.Prefix(t)
	setWorkerEnv(t, kafka, redisEnv, topic, ns, map[string]string{
		"PROJECTOR_PARTITIONS": "2", "PROJECTOR_TENANT": "netz-traced", "PROJECTOR_MONTH": "2026-03", "PROJECTOR_MALOS": "3", "PROJECTOR_SEED": "5",
	})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"generate"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("billing generate: %v", err)
	}

	workerCtx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(workerCtx, []string{"worker"}, io.Discard, io.Discard) }()
	month, _ := mabis.ParseMonth("2026-03")
	_, want, err := loadgen.Build(loadgen.Config{Tenant: "netz-traced", Month: month, MaLos: 3, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := openReadModel(options{tenant: "netz-traced", month: month, projection: mabis.ProjectionName, namespace: ns}, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		err := want.Verify(ctx, rm.reader)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not build the read model: %v", err)
		}
	}
	stopWorker()
	if err := <-done; err != nil {
		t.Fatalf("billing worker: %v", err)
	}

	// Jaeger stores spans shortly after the exporters flushed them.
	complete := func(tr testenv.Trace) bool {
		_, a := tr.SpanByName("append " + topic)
		_, p := tr.SpanByName(topic + " publish")
		_, r := tr.SpanByName(topic + " receive")
		_, ap := tr.SpanByName("apply " + mabis.ProjectionName)
		return a && p && r && ap
	}
	traces := jaeger.WaitTraces(t, service, 10*time.Minute, func(trs []testenv.Trace) bool {
		for _, tr := range trs {
			if complete(tr) {
				return true
			}
		}
		return false
	})
	for _, tr := range traces {
		if !complete(tr) {
			continue
		}
		appendSpan, _ := tr.SpanByName("append " + topic)
		apply, _ := tr.SpanByName("apply " + mabis.ProjectionName)
		if appendSpan.Tags["projector.stream_id"] != apply.Tags["projector.stream_id"] {
			t.Errorf("append of %v and apply of %v in one trace", appendSpan.Tags["projector.stream_id"], apply.Tags["projector.stream_id"])
		}
		byID := map[string]testenv.Span{}
		for _, s := range tr.Spans {
			byID[s.SpanID] = s
		}
		// apply -> receive -> publish -> append, by parent references.
		chain := []string{"apply " + mabis.ProjectionName, topic + " receive", topic + " publish", "append " + topic}
		span := apply
		for i, name := range chain {
			if span.OperationName != name {
				t.Fatalf("step %d of the chain is %q, want %q", i, span.OperationName, name)
			}
			if i+1 == len(chain) {
				break
			}
			var parent testenv.Span
			for _, ref := range span.References {
				if ref.RefType == "CHILD_OF" {
					parent = byID[ref.SpanID]
				}
			}
			span = parent
		}
		t.Logf("trace %s: %d spans, stream %v", tr.TraceID, len(tr.Spans), apply.Tags["projector.stream_id"])
		return
	}
	t.Fatal("no complete trace")
}
