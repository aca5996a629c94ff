package framework_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
)

// counter records applied sequences per stream and can be told to fail.
type counter struct {
	name    string
	mu      sync.Mutex
	applied map[string][]uint64
	fail    func(e framework.Event) error // nil: never fail
}

func newCounter() *counter { return &counter{name: "counter", applied: map[string][]uint64{}} }

func (c *counter) Name() string { return c.name }

func (c *counter) Apply(_ context.Context, e framework.Event) error {
	if c.fail != nil {
		if err := c.fail(e); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seqs := c.applied[e.StreamID]
	if n := len(seqs); n > 0 && seqs[n-1]+1 != e.Sequence {
		return fmt.Errorf("out of order: %d after %d", e.Sequence, seqs[n-1])
	}
	c.applied[e.StreamID] = append(seqs, e.Sequence)
	return nil
}

func (c *counter) got(stream string) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.applied[stream])
}

// tracking adds a SequenceTracker to counter.
type tracking struct{ *counter }

func (t tracking) LastSequence(_ context.Context, stream string) (uint64, error) {
	s := t.got(stream)
	if len(s) == 0 {
		return 0, nil
	}
	return s[len(s)-1], nil
}

func ev(stream string, seq uint64) framework.Event {
	return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprintf("%s#%d", stream, seq), Type: "Counted"}
}

func evs(stream string, seqs ...uint64) []framework.Event {
	out := make([]framework.Event, len(seqs))
	for i, s := range seqs {
		out[i] = ev(stream, s)
	}
	return out
}

func runner(t *testing.T, cfg framework.RunnerConfig) *framework.ProjectionRunner {
	t.Helper()
	r, err := framework.NewProjectionRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cursors(cp *framework.GlobalProjectionCheckpoint) map[string]uint64 {
	return maps.Collect(cp.All())
}

func TestRunAppliesSliceInOrderAcrossStreams(t *testing.T) {
	c := newCounter()
	events := []framework.Event{ev("s/a", 1), ev("s/b", 1), ev("s/a", 2), ev("s/b", 2), ev("s/a", 3)}
	res, err := runner(t, framework.RunnerConfig{}).Run(t.Context(), c, events)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"s/a": 3, "s/b": 2}; !maps.Equal(cursors(res.Checkpoint), want) {
		t.Errorf("cursors = %v, want %v", cursors(res.Checkpoint), want)
	}
	if res.Applied != 5 || res.Skipped != 0 || res.Streams != 2 {
		t.Errorf("result = %+v, want 5 applied over 2 streams", res)
	}
}

func TestDuplicatesAreSkippedAndCounted(t *testing.T) {
	for _, batch := range []int{1, 2, 256} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			c := newCounter()
			events := evs("s/a", 1, 2, 2, 1, 3, 3)
			res, err := runner(t, framework.RunnerConfig{BatchSize: batch}).Run(t.Context(), c, events)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.got("s/a"); !slices.Equal(got, []uint64{1, 2, 3}) {
				t.Errorf("applied %v, want [1 2 3]", got)
			}
			if res.Applied != 3 || res.Skipped != 3 {
				t.Errorf("applied %d skipped %d, want 3 and 3", res.Applied, res.Skipped)
			}
		})
	}
}

func TestGapIsAnErrorNamingStreamAndSequences(t *testing.T) {
	c := newCounter()
	res, err := runner(t, framework.RunnerConfig{BatchSize: 10}).Run(t.Context(), c, evs("process/t/x", 1, 2, 5, 3))
	if !errors.Is(err, framework.ErrSequenceGap) {
		t.Fatalf("error = %v, want ErrSequenceGap", err)
	}
	gap, ok := errors.AsType[*framework.GapError](err)
	if !ok || gap.StreamID != "process/t/x" || gap.Cursor != 2 || gap.Got != 5 {
		t.Fatalf("gap = %+v, want stream process/t/x cursor 2 got 5", gap)
	}
	for _, part := range []string{"process/t/x", "expected 3", "got 5"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q lacks %q", err, part)
		}
	}
	if got := c.got("process/t/x"); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("applied %v, want [1 2]: events before the gap are applied, none after", got)
	}
	if res.Checkpoint.Cursor("process/t/x") != 2 || res.Applied != 2 {
		t.Errorf("checkpoint cursor %d applied %d, want 2 and 2", res.Checkpoint.Cursor("process/t/x"), res.Applied)
	}
}

func TestProjectionErrorIsWrappedAndRetryResumes(t *testing.T) {
	store := memstore.NewEventStore()
	ctx := t.Context()
	for _, id := range []string{"process/t/a", "process/t/b"} {
		if _, err := store.Append(ctx, id, framework.NoStream, make([]framework.EventData, 4)); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("database down")
	failing := true
	c := newCounter()
	c.fail = func(e framework.Event) error {
		if failing && e.StreamID == "process/t/b" && e.Sequence == 3 {
			return boom
		}
		return nil
	}
	r := runner(t, framework.RunnerConfig{BatchSize: 2})
	ids := []string{"process/t/a", "process/t/b"}
	res, err := r.RunAllStreams(ctx, c, store, ids)
	if !errors.Is(err, boom) || !errors.Is(err, framework.ErrApplyFailed) {
		t.Fatalf("error = %v, want the projection's error wrapped as ErrApplyFailed", err)
	}
	ae, _ := errors.AsType[*framework.ApplyError](err)
	if ae == nil || ae.StreamID != "process/t/b" || ae.Sequence != 3 || ae.EventID == "" || ae.Projection != "counter" {
		t.Fatalf("apply error = %+v, want stream process/t/b sequence 3 with its event ID", ae)
	}
	if !strings.Contains(err.Error(), ae.EventID) {
		t.Errorf("message %q does not name the event ID", err)
	}
	if want := map[string]uint64{"process/t/a": 4, "process/t/b": 2}; !maps.Equal(cursors(res.Checkpoint), want) {
		t.Fatalf("checkpoint = %v, want exactly the applied events %v", cursors(res.Checkpoint), want)
	}
	failing = false
	res, err = r.CatchUpAllStreams(ctx, c, store, ids, res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 2 {
		t.Errorf("retry applied %d events, want the 2 after the failure", res.Applied)
	}
	for _, id := range ids {
		if got := c.got(id); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
			t.Errorf("%s applied %v, want [1 2 3 4] once each", id, got)
		}
	}
}

var errPanicked = errors.New("projection bug")

func TestPanicIsRecoveredIntoApplyError(t *testing.T) {
	c := newCounter()
	c.fail = func(e framework.Event) error {
		if e.Sequence == 2 {
			panic(errPanicked)
		}
		return nil
	}
	for _, batch := range []int{1, 8} {
		res, err := runner(t, framework.RunnerConfig{BatchSize: batch}).Run(t.Context(), c, evs("s/p", 1, 2, 3))
		if !errors.Is(err, framework.ErrProjectionPanicked) || !errors.Is(err, framework.ErrApplyFailed) {
			t.Fatalf("error = %v, want a recovered panic", err)
		}
		ae, _ := errors.AsType[*framework.ApplyError](err)
		pe, _ := errors.AsType[*framework.PanicError](err)
		if ae == nil || ae.Sequence != 2 || pe == nil || len(pe.Stack) == 0 || !errors.Is(err, errPanicked) {
			t.Fatalf("apply error %+v panic %+v, want sequence 2 with a stack", ae, pe)
		}
		if res.Checkpoint.Cursor("s/p") != 1 {
			t.Errorf("cursor = %d, want 1", res.Checkpoint.Cursor("s/p"))
		}
		c.applied = map[string][]uint64{}
	}
}

func TestCancellationStopsBetweenEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := newCounter()
	c.fail = func(e framework.Event) error {
		if e.Sequence == 2 {
			cancel() // the event itself is applied; the run stops after it
		}
		return nil
	}
	res, err := runner(t, framework.RunnerConfig{BatchSize: 1}).Run(ctx, c, evs("s/c", 1, 2, 3, 4))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if got := c.got("s/c"); !slices.Equal(got, []uint64{1, 2}) || res.Checkpoint.Cursor("s/c") != 2 {
		t.Errorf("applied %v cursor %d, want [1 2] and 2", got, res.Checkpoint.Cursor("s/c"))
	}
}

func TestUnknownEventTypesAreIgnored(t *testing.T) {
	var seen []string
	p := framework.HandlerProjection("known", framework.Handlers{
		"Opened": func(_ context.Context, e framework.Event) error { seen = append(seen, e.Type); return nil },
	})
	events := []framework.Event{ev("s/u", 1), ev("s/u", 2), ev("s/u", 3)}
	events[0].Type, events[1].Type, events[2].Type = "Opened", "SomethingNew", "Opened"
	res, err := runner(t, framework.RunnerConfig{}).Run(t.Context(), p, events)
	if err != nil {
		t.Fatalf("an unknown type must not be an error: %v", err)
	}
	if len(seen) != 2 || res.Checkpoint.Cursor("s/u") != 3 {
		t.Errorf("handled %v, cursor %d; want two Opened and cursor 3 (ignored events still count as applied)", seen, res.Checkpoint.Cursor("s/u"))
	}
}

func TestRunManyIsolatesProjections(t *testing.T) {
	good, bad := newCounter(), newCounter()
	good.name, bad.name = "good", "bad"
	bad.fail = func(e framework.Event) error {
		if e.StreamID == "s/a" && e.Sequence == 2 {
			return errors.New("bad event")
		}
		return nil
	}
	events := []framework.Event{ev("s/a", 1), ev("s/b", 1), ev("s/a", 2), ev("s/b", 2), ev("s/a", 3)}
	res, err := runner(t, framework.RunnerConfig{}).RunMany(t.Context(), []framework.Projection{good, bad}, events)
	if ae, _ := errors.AsType[*framework.ApplyError](err); ae == nil || ae.Projection != "bad" {
		t.Fatalf("error = %v, want an ApplyError of projection bad", err)
	}
	if want := map[string]uint64{"s/a": 3, "s/b": 2}; !maps.Equal(cursors(res["good"].Checkpoint), want) {
		t.Errorf("good projection cursors %v, want %v", cursors(res["good"].Checkpoint), want)
	}
	if want := map[string]uint64{"s/a": 1, "s/b": 1}; !maps.Equal(cursors(res["bad"].Checkpoint), want) {
		t.Errorf("bad projection cursors %v, want %v (stopped at its failure)", cursors(res["bad"].Checkpoint), want)
	}
	if _, err := runner(t, framework.RunnerConfig{}).RunMany(t.Context(), []framework.Projection{good, good}, nil); err == nil {
		t.Error("RunMany accepted two projections with the same name")
	}
}

func TestCatchUpStartsAfterLastSequence(t *testing.T) {
	c := tracking{newCounter()}
	r := runner(t, framework.RunnerConfig{})
	if _, err := r.Run(t.Context(), c, evs("s/t", 1, 2)); err != nil {
		t.Fatal(err)
	}
	res, err := r.CatchUp(t.Context(), c, evs("s/t", 1, 2, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.got("s/t"); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Errorf("applied %v, want [1 2 3 4]", got)
	}
	if res.Applied != 2 || res.Skipped != 2 || res.Checkpoint.Cursor("s/t") != 4 {
		t.Errorf("result %+v cursor %d, want applied 2 skipped 2 cursor 4", res, res.Checkpoint.Cursor("s/t"))
	}
	if _, err := r.CatchUp(t.Context(), newCounter(), nil); !errors.Is(err, framework.ErrNoSequenceTracker) {
		t.Errorf("catch-up without a tracker: %v, want ErrNoSequenceTracker", err)
	}
}

// batcher applies batches and fails at a chosen index.
type batcher struct {
	*counter
	sizes  []int
	failAt map[uint64]bool
}

func (b *batcher) ApplyBatch(ctx context.Context, events []framework.Event) (int, error) {
	b.sizes = append(b.sizes, len(events))
	for i, e := range events {
		if b.failAt[e.Sequence] {
			return i, errors.New("batch write failed")
		}
		if err := b.Apply(ctx, e); err != nil {
			return i, err
		}
	}
	return len(events), nil
}

func TestBatchApplier(t *testing.T) {
	b := &batcher{counter: newCounter(), failAt: map[uint64]bool{7: true}}
	res, err := runner(t, framework.RunnerConfig{BatchSize: 3}).Run(t.Context(), b, evs("s/b", 1, 2, 3, 4, 5, 6, 7, 8))
	ae, _ := errors.AsType[*framework.ApplyError](err)
	if ae == nil || ae.Sequence != 7 {
		t.Fatalf("error = %v, want an ApplyError at sequence 7", err)
	}
	if !slices.Equal(b.sizes, []int{3, 3, 2}) {
		t.Errorf("batch sizes %v, want [3 3 2]", b.sizes)
	}
	if res.Checkpoint.Cursor("s/b") != 6 || res.Applied != 6 {
		t.Errorf("cursor %d applied %d, want 6 and 6", res.Checkpoint.Cursor("s/b"), res.Applied)
	}
}

func TestConcurrentStreamsKeepOrder(t *testing.T) {
	store := memstore.NewEventStore()
	ctx := t.Context()
	var ids []string
	for i := range 40 {
		id := fmt.Sprintf("process/t/%02d", i)
		ids = append(ids, id)
		for range 3 {
			if _, err := store.Append(ctx, id, framework.AnyVersion, make([]framework.EventData, 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := newCounter() // fails on any out-of-order event
	res, err := runner(t, framework.RunnerConfig{Concurrency: 4, BatchSize: 7}).RunPrefix(ctx, c, store, "process/t/")
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 40*30 || res.Streams != 40 {
		t.Fatalf("applied %d over %d streams, want 1200 over 40", res.Applied, res.Streams)
	}
	for _, id := range ids {
		if res.Checkpoint.Cursor(id) != 30 || len(c.got(id)) != 30 {
			t.Errorf("%s: cursor %d, applied %d; want 30", id, res.Checkpoint.Cursor(id), len(c.got(id)))
		}
	}

	// A failure stops its stream; the checkpoint still covers exactly what
	// was applied, so the catch-up applies every remaining event once.
	c2 := newCounter()
	var once sync.Once
	c2.fail = func(e framework.Event) error {
		var err error
		if e.StreamID == "process/t/17" && e.Sequence == 11 {
			once.Do(func() { err = errors.New("transient") })
		}
		return err
	}
	r := runner(t, framework.RunnerConfig{Concurrency: 4, BatchSize: 7})
	res, err = r.RunPrefix(ctx, c2, store, "process/t/")
	if ae, _ := errors.AsType[*framework.ApplyError](err); ae == nil || ae.StreamID != "process/t/17" {
		t.Fatalf("error = %v, want the failure of process/t/17", err)
	}
	if res.Checkpoint.Cursor("process/t/17") != 10 {
		t.Errorf("cursor of the failed stream = %d, want 10", res.Checkpoint.Cursor("process/t/17"))
	}
	if res.Applied != 40*30-20 {
		t.Errorf("applied %d, want every event but the 20 after the failure", res.Applied)
	}
	for id, seq := range res.Checkpoint.All() {
		if n := len(c2.got(id)); uint64(n) != seq {
			t.Errorf("%s: cursor %d but %d events applied", id, seq, n)
		}
	}
	if _, err := r.CatchUpPrefix(ctx, c2, store, "process/t/", res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got := c2.got(id); len(got) != 30 {
			t.Errorf("%s: after the retry %d events applied, want 30", id, len(got))
		}
	}
}

// TestAStreamListedTwiceIsAppliedOnce: the multi-stream entry points take
// any list of IDs; one that names a stream twice (a caller that merged two
// listings) must not have it applied twice, concurrently or not.
func TestAStreamListedTwiceIsAppliedOnce(t *testing.T) {
	store := memstore.NewEventStore()
	ctx := t.Context()
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("process/t/%02d", i)
		if _, err := store.Append(ctx, id, framework.AnyVersion, make([]framework.EventData, 50)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id, id)
		if i%3 == 0 {
			ids = append(ids, id)
		}
	}
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			c := newCounter() // fails on an event out of order: the second pass of a stream starts at 1 again
			res, err := runner(t, framework.RunnerConfig{Concurrency: concurrency, BatchSize: 7}).RunAllStreams(ctx, c, store, ids)
			if err != nil {
				t.Fatal(err)
			}
			if res.Applied != 20*50 || res.Streams != 20 {
				t.Errorf("applied %d over %d streams, want 1000 over 20", res.Applied, res.Streams)
			}
			for i := range 20 {
				id := fmt.Sprintf("process/t/%02d", i)
				if got := c.got(id); len(got) != 50 {
					t.Errorf("%s applied %d events, want 50", id, len(got))
				}
			}
		})
	}
}

// recordingCheckpoints records what Advance was asked to write.
type recordingCheckpoints struct {
	*memstore.CheckpointStore
	advanced []map[string]uint64
}

func (r *recordingCheckpoints) Advance(ctx context.Context, name string, cursors map[string]uint64) error {
	r.advanced = append(r.advanced, maps.Clone(cursors))
	return r.CheckpointStore.Advance(ctx, name, cursors)
}

func TestCatchUpPersistentSavesOnlyMovedCursors(t *testing.T) {
	ctx := t.Context()
	store := memstore.NewEventStore()
	for _, id := range []string{"process/t/a", "process/t/b", "partner/t/c"} {
		if _, err := store.Append(ctx, id, framework.NoStream, make([]framework.EventData, 2)); err != nil {
			t.Fatal(err)
		}
	}
	cps := &recordingCheckpoints{CheckpointStore: memstore.NewCheckpointStore()}
	c := newCounter()
	r := runner(t, framework.RunnerConfig{})
	if _, err := r.CatchUpPersistent(ctx, c, store, cps, "process/"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "process/t/b", framework.ExactVersion(2), make([]framework.EventData, 1)); err != nil {
		t.Fatal(err)
	}
	res, err := r.CatchUpPersistent(ctx, c, store, cps, "process/")
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 1 {
		t.Errorf("second catch-up applied %d, want 1", res.Applied)
	}
	want := []map[string]uint64{{"process/t/a": 2, "process/t/b": 2}, {"process/t/b": 3}}
	if !slices.EqualFunc(cps.advanced, want, maps.Equal) {
		t.Errorf("advanced %v, want %v", cps.advanced, want)
	}
	// A third run with nothing new writes nothing.
	if _, err := r.CatchUpPersistent(ctx, c, store, cps, "process/"); err != nil || len(cps.advanced) != 2 {
		t.Errorf("idle catch-up: err %v, %d writes; want none", err, len(cps.advanced)-2)
	}

	// A failure part way stores the progress made before it.
	if _, err := store.Append(ctx, "process/t/a", framework.AnyVersion, make([]framework.EventData, 2)); err != nil {
		t.Fatal(err)
	}
	c.fail = func(e framework.Event) error {
		if e.StreamID == "process/t/a" && e.Sequence == 4 {
			return errors.New("fail at 4")
		}
		return nil
	}
	if _, err := r.CatchUpPersistent(ctx, c, store, cps, "process/"); err == nil {
		t.Fatal("want the failure")
	}
	if got := cps.advanced[len(cps.advanced)-1]; !maps.Equal(got, map[string]uint64{"process/t/a": 3}) {
		t.Errorf("after the failure advanced %v, want process/t/a to 3", got)
	}
}

func TestJSONHandlerNamesTheField(t *testing.T) {
	type opened struct {
		MaLo   string `json:"malo"`
		Amount int64  `json:"amount"`
	}
	var got opened
	p := framework.HandlerProjection("json", framework.Handlers{
		"Opened": framework.JSONHandler(func(_ context.Context, _ framework.Event, o opened) error { got = o; return nil }),
	})
	e := ev("process/t/j", 1)
	e.Type, e.Data = "Opened", []byte(`{"malo":"51238696788","amount":42}`)
	if _, err := runner(t, framework.RunnerConfig{}).Run(t.Context(), p, []framework.Event{e}); err != nil || got.Amount != 42 {
		t.Fatalf("decoded %+v, err %v", got, err)
	}
	e.Sequence, e.Data = 2, []byte(`{"malo":"51238696788","amount":"lots"}`)
	_, err := runner(t, framework.RunnerConfig{}).Run(t.Context(), p, []framework.Event{ev("process/t/j", 1), e})
	if !errors.Is(err, framework.ErrDecode) {
		t.Fatalf("error = %v, want ErrDecode", err)
	}
	for _, part := range []string{"process/t/j", "sequence 2", "amount"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q lacks %q", err, part)
		}
	}
}

func TestRunnerConfigValidateJoinsProblems(t *testing.T) {
	_, err := framework.NewProjectionRunner(framework.RunnerConfig{BatchSize: -1, Concurrency: -2})
	if err == nil || !strings.Contains(err.Error(), "BatchSize") || !strings.Contains(err.Error(), "Concurrency") {
		t.Errorf("error = %v, want both fields named", err)
	}
}

func TestEventWithSequenceZeroIsInvalid(t *testing.T) {
	_, err := runner(t, framework.RunnerConfig{}).Run(t.Context(), newCounter(), []framework.Event{ev("s/z", 0)})
	if !errors.Is(err, framework.ErrInvalidEvent) {
		t.Errorf("error = %v, want ErrInvalidEvent", err)
	}
}

// brokenStore is a memstore whose ReadStream of one stream yields its first
// good events and then an error, the way a store does on a bad record.
type brokenStore struct {
	*memstore.EventStore
	stream string
	good   int
	err    error
}

func (s *brokenStore) ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[framework.Event, error] {
	events := s.EventStore.ReadStream(ctx, streamID, after)
	if streamID != s.stream {
		return events
	}
	return func(yield func(framework.Event, error) bool) {
		n := 0
		for e, err := range events {
			if err == nil && n == s.good {
				yield(framework.Event{}, s.err)
				return
			}
			n++
			if !yield(e, err) {
				return
			}
		}
	}
}

// streamErrors collects every *StreamError of a joined error, in order.
func streamErrors(err error) map[string]error {
	out := map[string]error{}
	var walk func(error)
	walk = func(err error) {
		if se, ok := err.(*framework.StreamError); ok {
			out[se.StreamID] = se.Err
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// TestAFailedStreamStopsOnlyItself: in a multi-stream run, a bad record
// (a read error) in one stream and a projection error in another stop those
// two streams only. The others are applied whole, the error names each
// failed stream, and the result counts exactly what was applied.
func TestAFailedStreamStopsOnlyItself(t *testing.T) {
	ctx := t.Context()
	ids := []string{"process/t/a", "process/t/b", "process/t/c", "process/t/d"}
	errBadRecord := errors.New("bad record")
	errProjection := errors.New("read model down")
	newStore := func(t *testing.T) *brokenStore {
		t.Helper()
		s := &brokenStore{EventStore: memstore.NewEventStore(), stream: "process/t/b", good: 3, err: errBadRecord}
		for _, id := range ids {
			if _, err := s.Append(ctx, id, framework.NoStream, make([]framework.EventData, 5)); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	newFailing := func() *counter {
		c := newCounter()
		c.fail = func(e framework.Event) error {
			if e.StreamID == "process/t/c" && e.Sequence == 4 {
				return errProjection
			}
			return nil
		}
		return c
	}
	// The stream broken by a bad record keeps the good events before it;
	// the stream whose projection failed keeps the events before that.
	wantCursors := map[string]uint64{"process/t/a": 5, "process/t/b": 3, "process/t/c": 3, "process/t/d": 5}
	entryPoints := []struct {
		name string
		run  func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, error)
	}{
		{"RunAllStreams", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, error) {
			return r.RunAllStreams(ctx, c, s, ids)
		}},
		{"CatchUpAllStreams", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, error) {
			return r.CatchUpAllStreams(ctx, c, s, ids, framework.NewGlobalProjectionCheckpoint())
		}},
		{"RunPrefix", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, error) {
			return r.RunPrefix(ctx, c, s, "process/t/")
		}},
	}
	for _, ep := range entryPoints {
		for _, path := range []string{"onepass", "streambystream"} {
			for _, concurrency := range []int{1, 3} {
				for _, batch := range []int{1, 2, 256} {
					t.Run(fmt.Sprintf("%s/%s/concurrency%d/batch%d", ep.name, path, concurrency, batch), func(t *testing.T) {
						c, s := newFailing(), newStore(t)
						var store framework.EventStore = s
						if path == "streambystream" {
							store = streamByStream{s}
						}
						r := runner(t, framework.RunnerConfig{Concurrency: concurrency, BatchSize: batch})
						res, err := ep.run(r, c, store)
						failed := streamErrors(err)
						if len(failed) != 2 || !errors.Is(failed["process/t/b"], errBadRecord) || !errors.Is(failed["process/t/c"], errProjection) {
							t.Fatalf("error = %v, want one StreamError for process/t/b (bad record) and one for process/t/c (projection)", err)
						}
						if se, ok := errors.AsType[*framework.StreamError](err); !ok || !strings.Contains(se.Error(), se.StreamID) {
							t.Errorf("errors.AsType found %v, want a StreamError naming its stream", se)
						}
						if !errors.Is(err, errBadRecord) || !errors.Is(err, errProjection) || !errors.Is(err, framework.ErrApplyFailed) {
							t.Errorf("error = %v, want both causes reachable with errors.Is", err)
						}
						for _, id := range ids {
							if got, want := c.got(id), seqRange(wantCursors[id]); !slices.Equal(got, want) {
								t.Errorf("%s applied %v, want %v", id, got, want)
							}
						}
						if !maps.Equal(cursors(res.Checkpoint), wantCursors) {
							t.Errorf("checkpoint %v, want %v", cursors(res.Checkpoint), wantCursors)
						}
						if res.Applied != 16 || res.Skipped != 0 || res.Streams != 4 {
							t.Errorf("result applied %d skipped %d over %d streams, want 16, 0, 4", res.Applied, res.Skipped, res.Streams)
						}
					})
				}
			}
		}
	}

	// The persistent catch-up saves every cursor that moved: the streams
	// that succeeded in full, the failed ones up to their failure. A retry
	// after the faults are gone applies each remaining event once.
	t.Run("CatchUpPersistent", func(t *testing.T) {
		c, s := newFailing(), newStore(t)
		cps := &recordingCheckpoints{CheckpointStore: memstore.NewCheckpointStore()}
		r := runner(t, framework.RunnerConfig{BatchSize: 2})
		res, err := r.CatchUpPersistent(ctx, c, s, cps, "process/")
		if failed := streamErrors(err); len(failed) != 2 || failed["process/t/b"] == nil || failed["process/t/c"] == nil {
			t.Fatalf("error = %v, want the failures of process/t/b and process/t/c", err)
		}
		if res.Applied != 16 || len(cps.advanced) != 1 || !maps.Equal(cps.advanced[0], wantCursors) {
			t.Fatalf("applied %d, saved %v; want 16 and %v", res.Applied, cps.advanced, wantCursors)
		}
		c.fail, s.stream = nil, ""
		res, err = r.CatchUpPersistent(ctx, c, s, cps, "process/")
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied != 4 {
			t.Errorf("retry applied %d, want the 4 events after the failures", res.Applied)
		}
		for _, id := range ids {
			if got := c.got(id); !slices.Equal(got, seqRange(5)) {
				t.Errorf("%s applied %v, want [1 2 3 4 5] once each", id, got)
			}
		}
	})
}

func seqRange(to uint64) []uint64 {
	out := []uint64{}
	for s := uint64(1); s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestCancellationStopsAMultiStreamRun: ctx ending is not a failure of the
// stream it interrupts; it stops the whole run, and the error is ctx's.
func TestCancellationStopsAMultiStreamRun(t *testing.T) {
	store := memstore.NewEventStore()
	ids := []string{"process/t/a", "process/t/b", "process/t/c", "process/t/d"}
	for _, id := range ids {
		if _, err := store.Append(t.Context(), id, framework.NoStream, make([]framework.EventData, 5)); err != nil {
			t.Fatal(err)
		}
	}
	for _, concurrency := range []int{1, 3} {
		for _, onePass := range []bool{true, false} {
			t.Run(fmt.Sprintf("concurrency%d/onepass=%v", concurrency, onePass), func(t *testing.T) {
				var s framework.EventStore = store
				if !onePass {
					s = streamByStream{store}
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				c := newCounter()
				c.fail = func(e framework.Event) error {
					if e.StreamID == "process/t/b" && e.Sequence == 2 {
						cancel()
					}
					return nil
				}
				res, err := runner(t, framework.RunnerConfig{Concurrency: concurrency, BatchSize: 1}).RunAllStreams(ctx, c, s, ids)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("error = %v, want context.Canceled", err)
				}
				if se, ok := errors.AsType[*framework.StreamError](err); ok {
					t.Errorf("cancellation reported as the failure of stream %s", se.StreamID)
				}
				if got := c.got("process/t/b"); !slices.Equal(got, []uint64{1, 2}) {
					t.Errorf("process/t/b applied %v, want [1 2]", got)
				}
				var applied int64
				for _, id := range ids {
					n := len(c.got(id))
					applied += int64(n)
					if res.Checkpoint.Cursor(id) != uint64(n) {
						t.Errorf("%s: cursor %d, applied %d", id, res.Checkpoint.Cursor(id), n)
					}
				}
				if res.Applied != applied {
					t.Errorf("result applied %d, counted %d", res.Applied, applied)
				}
				// Stream by stream, the streams listed after the one cancelled
				// were not started; in one pass they interleave with it.
				if concurrency == 1 && !onePass && (len(c.got("process/t/c")) != 0 || len(c.got("process/t/d")) != 0) {
					t.Errorf("streams after the cancellation were applied: c %v, d %v", c.got("process/t/c"), c.got("process/t/d"))
				}
			})
		}
	}
}
