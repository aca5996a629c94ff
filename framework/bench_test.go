package framework_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/projector-dev/projector/framework"
)

// generatedStore serves one stream of n events made on the fly, so that the
// heap measured is the runner's, not the store's.
type generatedStore struct {
	n    uint64
	data []byte
}

func (s generatedStore) Append(context.Context, string, framework.ExpectedVersion, []framework.EventData) ([]framework.Event, error) {
	return nil, errors.New("read-only")
}

func (s generatedStore) ReadStream(ctx context.Context, id string, after uint64) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		now := time.Now()
		for seq := after + 1; seq <= s.n; seq++ {
			e := framework.Event{StreamID: id, Sequence: seq, EventID: fmt.Sprint(seq), Type: "ValuesReceived",
				Data: append([]byte(nil), s.data...), RecordedAt: now}
			if !yield(e, nil) {
				return
			}
		}
	}
}

func (s generatedStore) ListStreams(context.Context, string) iter.Seq2[string, error] {
	return func(func(string, error) bool) {}
}

func (s generatedStore) StreamVersion(context.Context, string) (uint64, error) { return s.n, nil }

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

func heapObjects() uint64 {
	metrics.Read(heapSample)
	return heapSample[0].Value.Uint64()
}

// peakHeapOfRun streams n events through RunFromStore with a projection that
// samples the heap every 1024 events, and returns the highest heap above
// the level before the run.
func peakHeapOfRun(b *testing.B, runner *framework.ProjectionRunner, n uint64) uint64 {
	store := generatedStore{n: n, data: []byte(`{"malo":"51238696788","day":"2026-03-29","values":[1,2,3,4,5,6,7,8]}`)}
	runtime.GC()
	base := heapObjects()
	var peak, applied uint64
	p := framework.ProjectionFunc("heap", func(context.Context, framework.Event) error {
		applied++
		if applied%1024 == 0 {
			peak = max(peak, heapObjects())
		}
		return nil
	})
	res, err := runner.RunFromStore(context.Background(), p, store, "process/bench/long")
	if err != nil || uint64(res.Applied) != n {
		b.Fatalf("applied %d of %d: %v", res.Applied, n, err)
	}
	if peak < base {
		return 0
	}
	return peak - base
}

// BenchmarkRunFromStorePeakHeap reads a 100,000- and a 1,000,000-event
// stream through RunFromStore in the same run and reports the peak heap of
// each and their ratio: memory is bounded by the batch, so the ratio stays
// near 1.
//
//	go test -run '^$' -bench RunFromStorePeakHeap -benchtime 3x -count 6 ./framework
func BenchmarkRunFromStorePeakHeap(b *testing.B) {
	runner, err := framework.NewProjectionRunner(framework.RunnerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	var small, large uint64
	for b.Loop() {
		small = max(small, peakHeapOfRun(b, runner, 100_000))
		large = max(large, peakHeapOfRun(b, runner, 1_000_000))
	}
	b.ReportMetric(float64(small), "peak-heap-100k-B")
	b.ReportMetric(float64(large), "peak-heap-1M-B")
	b.ReportMetric(float64(large)/float64(small), "ratio-1M/100k")
	b.ReportMetric(float64(1_100_000*b.N)/b.Elapsed().Seconds(), "events/s")
}
