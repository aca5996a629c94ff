package eventstoretest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/projector-dev/projector/framework"
)

// recorder is a projection that remembers what it applied, per stream, and
// tracks its last sequence per stream.
type recorder struct {
	mu      sync.Mutex
	applied map[string][]uint64
}

func newRecorder() *recorder { return &recorder{applied: map[string][]uint64{}} }

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Apply(_ context.Context, e framework.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied[e.StreamID] = append(r.applied[e.StreamID], e.Sequence)
	return nil
}

func (r *recorder) LastSequence(_ context.Context, streamID string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.applied[streamID]
	if len(s) == 0 {
		return 0, nil
	}
	return s[len(s)-1], nil
}

func (r *recorder) got(streamID string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied[streamID])
}

func (r *recorder) streams() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.applied))
}

func newRunner(t *testing.T) *framework.ProjectionRunner {
	t.Helper()
	r, err := framework.NewProjectionRunner(framework.RunnerConfig{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cursors(cp *framework.GlobalProjectionCheckpoint) map[string]uint64 {
	out := map[string]uint64{}
	for id, seq := range cp.All() {
		out[id] = seq
	}
	return out
}

func testFullReplay(t *testing.T, s framework.EventStore) {
	const id = "process/t1/replay"
	mustAppend(t, s, id, 3)
	rec := newRecorder()
	res, err := newRunner(t).RunFromStore(ctxFor(t), rec, s, id)
	if err != nil {
		t.Fatalf("RunFromStore: %v", err)
	}
	if got := rec.got(id); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("applied %v, want [1 2 3]", got)
	}
	if res.Applied != 3 || res.Checkpoint.Cursor(id) != 3 {
		t.Errorf("result applied %d, cursor %d; want 3 and 3", res.Applied, res.Checkpoint.Cursor(id))
	}
}

func testIncrementalCatchUp(t *testing.T, s framework.EventStore) {
	const id = "process/t1/incremental"
	mustAppend(t, s, id, 2)
	rec := newRecorder()
	r := newRunner(t)
	if _, err := r.RunFromStore(ctxFor(t), rec, s, id); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, id, 2)
	res, err := r.CatchUpFromStore(ctxFor(t), rec, s, id)
	if err != nil {
		t.Fatalf("CatchUpFromStore: %v", err)
	}
	if got := rec.got(id); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Errorf("applied %v, want [1 2 3 4] (each once)", got)
	}
	if res.Applied != 2 || res.Checkpoint.Cursor(id) != 4 {
		t.Errorf("catch-up applied %d, cursor %d; want 2 and 4", res.Applied, res.Checkpoint.Cursor(id))
	}
}

func testThreeStreams(t *testing.T, s framework.EventStore) {
	sizes := map[string]int{"process/t1/a": 2, "process/t1/b": 3, "process/t1/c": 1}
	for id, n := range sizes {
		mustAppend(t, s, id, n)
	}
	rec := newRecorder()
	res, err := newRunner(t).RunAllStreams(ctxFor(t), rec, s, slices.Sorted(maps.Keys(sizes)))
	if err != nil {
		t.Fatalf("RunAllStreams: %v", err)
	}
	want := map[string]uint64{"process/t1/a": 2, "process/t1/b": 3, "process/t1/c": 1}
	if got := cursors(res.Checkpoint); !maps.Equal(got, want) {
		t.Errorf("cursors = %v, want %v", got, want)
	}
	if res.Applied != 6 {
		t.Errorf("applied %d events, want 6", res.Applied)
	}
}

func testCatchUpAcrossStreams(t *testing.T, s framework.EventStore) {
	ids := []string{"process/t1/a", "process/t1/b", "process/t1/c"}
	for _, id := range ids {
		mustAppend(t, s, id, 2)
	}
	rec := newRecorder()
	r := newRunner(t)
	first, err := r.RunAllStreams(ctxFor(t), rec, s, ids)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "process/t1/a", 1)
	mustAppend(t, s, "process/t1/c", 3)
	second, err := r.CatchUpAllStreams(ctxFor(t), rec, s, ids, first.Checkpoint)
	if err != nil {
		t.Fatalf("CatchUpAllStreams: %v", err)
	}
	if second.Applied != 4 || second.Skipped != 0 {
		t.Errorf("catch-up applied %d, skipped %d; want 4 new events and nothing re-read", second.Applied, second.Skipped)
	}
	want := map[string][]uint64{"process/t1/a": {1, 2, 3}, "process/t1/b": {1, 2}, "process/t1/c": {1, 2, 3, 4, 5}}
	for id, seqs := range want {
		if got := rec.got(id); !slices.Equal(got, seqs) {
			t.Errorf("stream %s applied %v, want %v", id, got, seqs)
		}
	}
	if first.Checkpoint.Cursor("process/t1/a") != 2 {
		t.Errorf("catch-up modified the checkpoint it started from")
	}
}

func testPrefixExcludesPartner(t *testing.T, s framework.EventStore) {
	for _, id := range []string{"process/t1/a", "process/t2/a", "partner/t1/a"} {
		mustAppend(t, s, id, 2)
	}
	rec := newRecorder()
	res, err := newRunner(t).RunPrefix(ctxFor(t), rec, s, framework.ProcessPrefix)
	if err != nil {
		t.Fatalf("RunPrefix: %v", err)
	}
	if got := rec.streams(); !slices.Equal(got, []string{"process/t1/a", "process/t2/a"}) {
		t.Errorf("applied streams %v, want only the process/ streams", got)
	}
	if res.Checkpoint.Cursor("partner/t1/a") != 0 || res.Streams != 2 {
		t.Errorf("result covers %d streams, partner cursor %d; want 2 and 0", res.Streams, res.Checkpoint.Cursor("partner/t1/a"))
	}
	tenant, err := framework.TenantPrefix("t1")
	if err != nil {
		t.Fatal(err)
	}
	one := newRecorder()
	if _, err := newRunner(t).RunPrefix(ctxFor(t), one, s, tenant); err != nil {
		t.Fatal(err)
	}
	if got := one.streams(); !slices.Equal(got, []string{"process/t1/a"}) {
		t.Errorf("tenant t1 applied streams %v, want [process/t1/a]", got)
	}
}

// testSpecificationExample is the original specification's example: list
// every process/ stream, run all streams, later catch up all streams from
// the returned checkpoint.
func testSpecificationExample(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	mustAppend(t, s, "process/acme/1", 2)
	mustAppend(t, s, "process/acme/2", 1)
	mustAppend(t, s, "process/zeta/1", 3)
	mustAppend(t, s, "partner/acme/1", 1)

	ids := listAll(t, s, framework.ProcessPrefix)
	rec := newRecorder()
	r := newRunner(t)
	res, err := r.RunAllStreams(ctx, rec, s, ids)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 6 {
		t.Fatalf("run applied %d events, want 6", res.Applied)
	}
	mustAppend(t, s, "process/acme/2", 2)
	mustAppend(t, s, "process/new/1", 1)

	ids = listAll(t, s, framework.ProcessPrefix)
	res, err = r.CatchUpAllStreams(ctx, rec, s, ids, res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"process/acme/1": 2, "process/acme/2": 3, "process/new/1": 1, "process/zeta/1": 3}
	if got := cursors(res.Checkpoint); !maps.Equal(got, want) {
		t.Errorf("cursors after catch-up = %v, want %v", got, want)
	}
	if res.Applied != 3 {
		t.Errorf("catch-up applied %d events, want 3", res.Applied)
	}
}

// failingRecorder is a recorder whose Apply fails at one event while err is
// set.
type failingRecorder struct {
	*recorder
	stream string
	seq    uint64
	err    error
}

func (f *failingRecorder) Apply(ctx context.Context, e framework.Event) error {
	if f.err != nil && e.StreamID == f.stream && e.Sequence == f.seq {
		return f.err
	}
	return f.recorder.Apply(ctx, e)
}

// testAFailedStreamStopsOnlyItself: a projection error in one stream of a
// multi-stream run stops that stream only; the others are applied in full,
// the error names the stream, and a catch-up after the fault resumes it.
func testAFailedStreamStopsOnlyItself(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	ids := []string{"process/t1/a", "process/t1/b", "process/t1/c"}
	for _, id := range ids {
		mustAppend(t, s, id, 4)
	}
	errDown := errors.New("read model down")
	rec := &failingRecorder{recorder: newRecorder(), stream: "process/t1/b", seq: 3, err: errDown}
	r := newRunner(t)
	res, err := r.RunAllStreams(ctx, rec, s, ids)
	if se, ok := errors.AsType[*framework.StreamError](err); !ok || se.StreamID != "process/t1/b" || !errors.Is(err, errDown) {
		t.Fatalf("RunAllStreams error = %v, want a StreamError of process/t1/b wrapping the projection's error", err)
	}
	want := map[string][]uint64{"process/t1/a": {1, 2, 3, 4}, "process/t1/b": {1, 2}, "process/t1/c": {1, 2, 3, 4}}
	for id, seqs := range want {
		if got := rec.got(id); !slices.Equal(got, seqs) {
			t.Errorf("stream %s applied %v, want %v", id, got, seqs)
		}
	}
	wantCursors := map[string]uint64{"process/t1/a": 4, "process/t1/b": 2, "process/t1/c": 4}
	if got := cursors(res.Checkpoint); !maps.Equal(got, wantCursors) || res.Applied != 10 {
		t.Errorf("cursors %v, applied %d; want %v and 10", got, res.Applied, wantCursors)
	}
	rec.err = nil
	res, err = r.CatchUpAllStreams(ctx, rec, s, ids, res.Checkpoint)
	if err != nil {
		t.Fatalf("CatchUpAllStreams after the fault: %v", err)
	}
	if got := rec.got("process/t1/b"); !slices.Equal(got, []uint64{1, 2, 3, 4}) || res.Applied != 2 {
		t.Errorf("catch-up applied %d, process/t1/b now %v; want 2 and [1 2 3 4]", res.Applied, got)
	}
}
