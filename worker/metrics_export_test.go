package worker

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/internal/testenv"
)

// exportedMetricsFile lists the metric names a worker exports on /metrics, one per line, sorted:
// the names a PromQL selector can use, as they appear in the samples (a counter's _total, a
// histogram's _bucket, _count and _sum; never a histogram's bare family name). The Helm chart's
// alert rules and Grafana dashboard are checked against it (tools/charttest).
const exportedMetricsFile = "../deploy/helm/projector/files/exported-metrics.txt"

var updateExportedMetrics = flag.Bool("update-exported-metrics", false,
	"rewrite "+exportedMetricsFile+" from what the worker exports (or set PROJECTOR_UPDATE_EXPORTED_METRICS=1)")

// keptRuntimeMetrics are the go_* and process_* names the golden file keeps: the ones the chart's
// dashboard uses, exported on every platform the worker runs on (Linux). The other go_* and
// process_* names depend on the Go release and the platform and are not compared.
var keptRuntimeMetrics = []string{
	"go_goroutines",
	"go_memstats_heap_alloc_bytes",
	"go_memstats_heap_inuse_bytes",
	"process_cpu_seconds_total",
	"process_resident_memory_bytes",
}

// volatileMetric reports names that are not compared: the runtime's (but the kept ones) and
// franz-go kotel's client metrics (messaging_kafka_*), whose series appear with connection events
// (a disconnect, a connect error) rather than with the worker's own start.
func volatileMetric(name string) bool {
	if slices.Contains(keptRuntimeMetrics, name) {
		return false
	}
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "messaging_kafka_")
}

// sampleNames returns the metric names of the samples in a text exposition, less the volatile ones.
func sampleNames(exposition string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !volatileMetric(name) {
			names[name] = true
		}
	}
	return names
}

// TestExportedMetricsGolden runs a worker on the real Kafka and Redis, applies an event so that every
// instrument has recorded (the apply and checkpoint histograms, the per-partition gauges), scrapes
// /metrics and compares the names to the golden file of the Helm chart: a name the worker exports
// that the file lacks, or one the file lists that the worker no longer exports, fails. The chart's
// rules and dashboard may use only the names in the file (tools/charttest checks them), so a renamed
// metric fails here first, and then there. Rewrite the file with -update-exported-metrics.
func TestExportedMetricsGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a worker on real servers")
	}
	update := *updateExportedMetrics || os.Getenv("PROJECTOR_UPDATE_EXPORTED_METRICS") == "1"
	kafka := testenv.Kafka(t)
	rdb := testenv.Redis(t)
	if !kafka.Real || !rdb.Real {
		// testenv already failed under CI=true or PROJECTOR_REQUIRE_REAL; a fake's metrics would do
		// locally, but kfake answers some metadata differently: say so.
		t.Logf("running on Kafka %s and Redis %s", map[bool]string{true: "real", false: "fake"}[kafka.Real], rdb.Kind)
	}
	w := startOrdersWorker(t, kafka, map[string]string{
		"PROJECTOR_REDIS_URL": "redis://" + rdb.Addr, "PROJECTOR_REDIS_NAMESPACE": rdb.Prefix(t),
		"PROJECTOR_SHUTDOWN_TIMEOUT": "10s",
		"OTEL_SDK_DISABLED":          "false", // meters recorded, served on /metrics; nothing exported
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	base := w.base

	var want map[string]bool
	if !update {
		b, err := os.ReadFile(exportedMetricsFile)
		if err != nil {
			t.Fatalf("%v (write it with go test ./worker -run TestExportedMetricsGolden -update-exported-metrics)", err)
		}
		want = map[string]bool{}
		for line := range strings.Lines(string(b)) {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				want[line] = true
			}
		}
	}
	// Every instrument has recorded once both events are applied and their cursors stored: the apply
	// and checkpoint histograms have samples, the per-partition gauges their partitions. Scrape until
	// then, and then until the names match the file or a few more seconds passed; then compare.
	settled := []string{"messaging_process_duration_seconds_count", "projector_checkpoint_duration_seconds_count",
		"projector_lag_records", "projector_partitions", "projector_topic_partitions"}
	applied := regexp.MustCompile(`(?m)^projector_events_applied_total\{[^}]*\} 2$`)
	var got map[string]bool
	var settledAt time.Time
	for {
		code, body, err := get(ctx, base+"/metrics")
		if err == nil && code == 200 {
			got = sampleNames(body)
			ready := applied.MatchString(body)
			for _, n := range settled {
				ready = ready && got[n]
			}
			if ready && settledAt.IsZero() {
				settledAt = time.Now()
			}
			if ready && (update || maps.Equal(got, want) || time.Since(settledAt) > 10*time.Second) {
				break
			}
		}
		select {
		case <-time.After(250 * time.Millisecond):
			continue
		case <-ctx.Done():
		}
		t.Fatalf("the worker did not apply both events with every instrument recorded in time; last scrape had %v\n%s",
			slices.Sorted(maps.Keys(got)), w.stderr.String())
	}
	if err := w.stop(); err != nil {
		t.Errorf("Run: %v\n%s", err, w.stderr.String())
	}

	names := slices.Sorted(maps.Keys(got))
	if update {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintln(&b, n)
		}
		if err := os.WriteFile(exportedMetricsFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d names to %s", len(names), exportedMetricsFile)
		return
	}
	for _, n := range names {
		if !want[n] {
			t.Errorf("the worker exports %s, which %s lacks: add it (-update-exported-metrics) and document it in docs/observability.md", n, exportedMetricsFile)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if !got[n] {
			t.Errorf("%s lists %s, which the worker no longer exports: the chart's rules and dashboard may use it (go -C tools test ./charttest)", exportedMetricsFile, n)
		}
	}
}
