package framework_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/projector-dev/projector/framework"
)

func TestClassify(t *testing.T) {
	e := func(seq uint64) framework.Event { return framework.Event{StreamID: "s", Sequence: seq, EventID: "e"} }
	for _, c := range []struct {
		cursor, seq uint64
		want        framework.Order
	}{
		{0, 1, framework.InOrder}, {4, 5, framework.InOrder},
		{4, 4, framework.Duplicate}, {4, 1, framework.Duplicate},
		{0, 2, framework.Gap}, {4, 9, framework.Gap},
	} {
		if got := framework.Classify(c.cursor, e(c.seq)); got != c.want {
			t.Errorf("Classify(%d, seq %d) = %s, want %s", c.cursor, c.seq, got, c.want)
		}
	}
	gap := framework.NewGapError(4, e(9))
	if !errors.Is(gap, framework.ErrSequenceGap) || gap.Cursor != 4 || gap.Got != 9 || gap.StreamID != "s" {
		t.Errorf("NewGapError = %+v", gap)
	}
}

// batchFunc is a projection with a batch capability given as a function.
type batchFunc struct {
	one   func(framework.Event) error
	batch func([]framework.Event) (int, error)
	calls int
}

func (b *batchFunc) Name() string { return "batch" }
func (b *batchFunc) Apply(_ context.Context, e framework.Event) error {
	return b.one(e)
}
func (b *batchFunc) ApplyBatch(_ context.Context, evs []framework.Event) (int, error) {
	b.calls++
	return b.batch(evs)
}

func TestApplyEventsFollowsTheBatchRules(t *testing.T) {
	evs := []framework.Event{{StreamID: "s", Sequence: 1}, {StreamID: "s", Sequence: 2}, {StreamID: "s", Sequence: 3}}
	ctx := t.Context()
	boom := errors.New("boom")

	// A count short of the batch without an error is an error at the
	// first event not applied.
	p := &batchFunc{batch: func([]framework.Event) (int, error) { return 2, nil }}
	if n, err := framework.ApplyEvents(ctx, p, evs, framework.ApplyOptions{}); n != 2 || err == nil {
		t.Errorf("short batch: %d, %v; want 2 and an error", n, err)
	}
	// Counts out of range are clamped.
	p.batch = func([]framework.Event) (int, error) { return 7, nil }
	if n, err := framework.ApplyEvents(ctx, p, evs, framework.ApplyOptions{}); n != 3 || err != nil {
		t.Errorf("count above the batch: %d, %v; want 3, nil", n, err)
	}
	p.batch = func([]framework.Event) (int, error) { return -1, boom }
	if n, err := framework.ApplyEvents(ctx, p, evs, framework.ApplyOptions{}); n != 0 || !errors.Is(err, boom) {
		t.Errorf("negative count: %d, %v; want 0, boom", n, err)
	}
	// A panic in ApplyBatch names no event: the events are applied one
	// by one, and the one that panics is found.
	p.batch = func([]framework.Event) (int, error) { panic("batch bug") }
	var applied []uint64
	p.one = func(e framework.Event) error {
		if e.Sequence == 3 {
			panic(fmt.Sprint("bug at ", e.Sequence))
		}
		applied = append(applied, e.Sequence)
		return nil
	}
	n, err := framework.ApplyEvents(ctx, p, evs, framework.ApplyOptions{})
	pe, _ := errors.AsType[*framework.PanicError](err)
	if n != 2 || pe == nil || pe.Value != "bug at 3" || len(pe.Stack) == 0 || len(applied) != 2 {
		t.Errorf("panicking batch: n %d, err %v, applied %v; want 2 and the panic of event 3", n, err, applied)
	}
	// One event goes to Apply, not ApplyBatch.
	p.calls = 0
	if n, err := framework.ApplyEvents(ctx, p, evs[:1], framework.ApplyOptions{}); n != 1 || err != nil || p.calls != 0 {
		t.Errorf("single event: %d, %v, %d batch calls", n, err, p.calls)
	}
	// StopOnCancel stops between events with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := framework.ApplyEvents(cctx, p, evs[:1], framework.ApplyOptions{StopOnCancel: true}); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %d, %v", n, err)
	}
}

func TestPermanentErrors(t *testing.T) {
	decode := &framework.DecodeError{StreamID: "s", Sequence: 2, EventType: "T", Err: errors.New("bad")}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{decode, true},
		{fmt.Errorf("apply: %w", decode), true},
		{fmt.Errorf("tariff unknown: %w", framework.ErrPermanent), true},
		{errors.New("timeout"), false},
		{framework.ErrUnavailable, false},
	} {
		if got := framework.Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if !errors.Is(decode, framework.ErrDecode) {
		t.Error("a DecodeError no longer matches ErrDecode")
	}
}

// An event that repeats an applied sequence under another event ID is a
// conflict, also in the in-process runner: the stream stops there (after
// the events before it), named in a SequenceConflictError; the same event
// delivered again is a duplicate, skipped. (The runner used to skip both.)
func TestProjectionRunnerStopsAStreamAtAConflict(t *testing.T) {
	for _, batch := range []int{1, 8} {
		c := newCounter()
		redelivered := ev("s/c", 2)
		other := ev("s/c", 2)
		other.EventID = "another-event"
		events := append(evs("s/c", 1, 2), redelivered, ev("s/c", 3), other, ev("s/c", 4))
		events = append(events, evs("s/ok", 1, 2)...)
		res, err := runner(t, framework.RunnerConfig{BatchSize: batch}).Run(t.Context(), c, events)
		ce, _ := errors.AsType[*framework.SequenceConflictError](err)
		if ce == nil || !errors.Is(err, framework.ErrSequenceConflict) || ce.Sequence != 2 || ce.EventID != "another-event" || ce.Applied != redelivered.EventID {
			t.Fatalf("batch %d: error %v, want the conflict at sequence 2", batch, err)
		}
		if got := c.got("s/c"); !slices.Equal(got, []uint64{1, 2, 3}) || res.Checkpoint.Cursor("s/c") != 3 || res.Skipped != 1 {
			t.Errorf("batch %d: applied %v, cursor %d, skipped %d; want [1 2 3], 3 and the redelivery skipped", batch, got, res.Checkpoint.Cursor("s/c"), res.Skipped)
		}
	}
}

func TestRecentEvents(t *testing.T) {
	var r framework.RecentEvents
	for seq := uint64(1); seq <= framework.RecentWindow+2; seq++ {
		r.Remember("s", seq, fmt.Sprint("e", seq))
	}
	if id, ok := r.EventAt("s", framework.RecentWindow+2); !ok || id != fmt.Sprint("e", framework.RecentWindow+2) {
		t.Errorf("EventAt(last) = %q, %v", id, ok)
	}
	if _, ok := r.EventAt("s", 1); ok {
		t.Error("the window kept more than RecentWindow events")
	}
	if err := r.CheckDuplicate(framework.Event{StreamID: "s", Sequence: 5, EventID: "e5"}); err != nil {
		t.Errorf("a redelivery: %v", err)
	}
	err := r.CheckDuplicate(framework.Event{StreamID: "s", Sequence: 5, EventID: "x"})
	if !errors.Is(err, framework.ErrSequenceConflict) || !framework.Permanent(err) ||
		err.Error() != "sequence 5 of stream s was applied as event e5; event x repeats it" {
		t.Errorf("a conflict: %v", err)
	}
}

// A position encodes with snake_case names (status -o json, parked records)
// and still decodes from the field names stored before they had tags.
func TestPositionJSON(t *testing.T) {
	b, err := json.Marshal(framework.Position{Partition: 9, Offset: 4000})
	if err != nil || string(b) != `{"partition":9,"offset":4000}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	var p framework.Position
	if err := json.Unmarshal([]byte(`{"Partition":9,"Offset":4000}`), &p); err != nil || p != (framework.Position{Partition: 9, Offset: 4000}) {
		t.Errorf("an old record decodes as %+v, %v", p, err)
	}
}
