package redischeckpoint_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// amountOf reads the test events' payload: the amount as a decimal.
func amountOf(e framework.Event) (int64, error) { return strconv.ParseInt(string(e.Data), 10, 64) }

func totalsProjection(t *testing.T, s *redischeckpoint.Store) *redischeckpoint.AtomicProjection {
	t.Helper()
	p, err := s.NewAtomicProjection("totals", func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type != "Booked" {
			return nil
		}
		n, err := amountOf(e)
		if err != nil {
			return fmt.Errorf("stream %s sequence %d: amount: %w", e.StreamID, e.Sequence, err)
		}
		w.HIncrBy(w.Key("totals"), e.StreamID, n)
		w.HIncrBy(w.Key("totals"), "all", n)
		w.IncrBy(w.Key("events"), 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func booked(stream string, seq uint64, amount int64) framework.Event {
	return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprintf("%s#%d", stream, seq), Type: "Booked", Data: []byte(strconv.FormatInt(amount, 10))}
}

// TestAtomicApplyCountsEachEventOnceAcrossACrash interrupts processing
// between applying and committing offsets (the worker dies after the
// script, before it records progress anywhere else), replays the same
// events from scratch, and checks that every effect counted exactly once.
func TestAtomicApplyCountsEachEventOnceAcrossACrash(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	var events []framework.Event
	var want int64
	for i := range 40 {
		stream := fmt.Sprintf("process/t/%02d", i%8)
		seq := uint64(i/8 + 1)
		amount := int64(i*7 + 1)
		events = append(events, booked(stream, seq, amount))
		want += amount
	}
	fence, err := s.AcquireFence(ctx, "totals", 0)
	if err != nil {
		t.Fatal(err)
	}
	// First attempt: the first 25 events are applied, then the worker
	// "crashes" before committing any offset.
	n, err := p.ApplyBatch(controlplane.WithFence(ctx, fence), events[:25])
	if err != nil || n != 25 {
		t.Fatalf("first attempt applied %d: %v", n, err)
	}
	// Redelivery from the last committed offset (none): a new worker with
	// a new fence and an empty in-memory state gets all 40 events again.
	fence2, err := s.AcquireFence(ctx, "totals", 0)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := framework.NewProjectionRunner(framework.RunnerConfig{BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runner.Run(controlplane.WithFence(ctx, fence2), p, events); err != nil {
		t.Fatalf("replay: %v", err)
	}
	all, err := env.Client.HGet(ctx, p.Key("totals"), "all").Int64()
	if err != nil {
		t.Fatal(err)
	}
	count, _ := env.Client.Get(ctx, p.Key("events")).Int64()
	if all != want || count != 40 {
		t.Errorf("total %d over %d events, want %d over 40: an event counted twice or not at all", all, count, want)
	}
	if p.Skipped() != 25 {
		t.Errorf("scripts skipped %d events, want the 25 applied before the crash", p.Skipped())
	}
	// The stale worker's late write is rejected, and changes nothing.
	if _, err := p.ApplyBatch(controlplane.WithFence(ctx, fence), []framework.Event{booked("process/t/00", 6, 1000)}); !errors.Is(err, redischeckpoint.ErrFenced) {
		t.Errorf("a write with the first worker's fence = %v, want ErrFenced", err)
	}
	if again, _ := env.Client.HGet(ctx, p.Key("totals"), "all").Int64(); again != want {
		t.Errorf("total changed to %d after a fenced write", again)
	}
	for i := range 8 {
		stream := fmt.Sprintf("process/t/%02d", i)
		if seq, err := p.LastSequence(ctx, stream); err != nil || seq != 5 {
			t.Errorf("LastSequence(%s) = %d, %v; want 5", stream, seq, err)
		}
	}
}

func TestAtomicApplyHoldsAGap(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	n, err := p.ApplyBatch(ctx, []framework.Event{booked("process/t/g", 1, 10), booked("process/t/g", 2, 10), booked("process/t/g", 4, 10)})
	gap, ok := errors.AsType[*framework.GapError](err)
	if !ok || gap.Cursor != 2 || gap.Got != 4 || n != 2 {
		t.Fatalf("ApplyBatch = %d, %v; want 2 processed and a gap from 2 to 4", n, err)
	}
	if all, _ := env.Client.HGet(ctx, p.Key("totals"), "all").Int64(); all != 20 {
		t.Errorf("total %d, want 20: the events before the gap count, the one after does not", all)
	}
}

func TestAtomicApplyErrorStopsAtTheEvent(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	bad := booked("process/t/e", 3, 0)
	bad.Data = []byte("12x")
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	res, err := runner.Run(ctx, p, []framework.Event{booked("process/t/e", 1, 5), booked("process/t/e", 2, 5), bad, booked("process/t/e", 4, 5)})
	ae, ok := errors.AsType[*framework.ApplyError](err)
	if !ok || ae.Sequence != 3 || !strings.Contains(err.Error(), "amount") {
		t.Fatalf("error = %v, want an ApplyError at sequence 3 naming the field", err)
	}
	if res.Checkpoint.Cursor("process/t/e") != 2 {
		t.Errorf("cursor %d, want 2", res.Checkpoint.Cursor("process/t/e"))
	}
	if seq, _ := p.LastSequence(ctx, "process/t/e"); seq != 2 {
		t.Errorf("stored cursor %d, want 2", seq)
	}
	if all, _ := env.Client.HGet(ctx, p.Key("totals"), "all").Int64(); all != 10 {
		t.Errorf("total %d, want 10", all)
	}
}

func TestReplaceCorrectsInsteadOfAdding(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	// Values per (MaLo, quarter hour), a sum and a count of contributors
	// per quarter hour.
	p, err := s.NewAtomicProjection("series", func(e framework.Event, w *redischeckpoint.Writes) error {
		v, err := amountOf(e)
		if err != nil {
			return err
		}
		malo := strings.TrimPrefix(e.StreamID, "process/t/")
		w.Replace(w.Key("values", malo), "q1", v,
			[]redischeckpoint.HashField{{Key: w.Key("sum"), Field: "q1"}},
			[]redischeckpoint.HashField{{Key: w.Key("count"), Field: "q1"}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	events := []framework.Event{
		booked("process/t/m1", 1, 100),
		booked("process/t/m2", 1, 50),
		booked("process/t/m1", 2, 80), // correction of m1: replaces 100
		booked("process/t/m1", 2, 80), // redelivered: skipped
	}
	for _, e := range events { // one call each, so the script sees the duplicate
		if _, err := p.ApplyBatch(ctx, []framework.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	sum, _ := env.Client.HGet(ctx, p.Key("sum"), "q1").Int64()
	count, _ := env.Client.HGet(ctx, p.Key("count"), "q1").Int64()
	if sum != 130 || count != 2 {
		t.Errorf("sum %d count %d, want 130 from 2 MaLos", sum, count)
	}
}

func TestWritesOutsideTheReadModelAreRefused(t *testing.T) {
	s, env, ns := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p, err := s.NewAtomicProjection("p", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HSet(ns+":{p}:cursors", e.StreamID, "999") // would forge a cursor
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.ApplyBatch(ctx, []framework.Event{booked("process/t/x", 1, 1)})
	if !errors.Is(err, redischeckpoint.ErrInvalidWrite) || !strings.Contains(err.Error(), "process/t/x") {
		t.Fatalf("error = %v, want ErrInvalidWrite naming the event", err)
	}
	if n, _ := env.Client.Exists(ctx, ns+":{p}:cursors").Result(); n != 0 {
		t.Error("the refused write reached Redis")
	}
}

func TestResetDropsReadModelAndCursors(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	var events []framework.Event
	for i := range 600 {
		events = append(events, booked(fmt.Sprintf("process/t/%03d", i), 1, 1))
		events[i].Data = []byte("1")
	}
	if _, err := p.ApplyBatch(ctx, events); err != nil {
		t.Fatal(err)
	}
	var r framework.Resetter = p
	if err := r.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := env.Client.Exists(ctx, p.Key("totals"), p.Key("events")).Result(); n != 0 {
		t.Errorf("%d read-model keys survived Reset", n)
	}
	if seq, _ := p.LastSequence(ctx, "process/t/000"); seq != 0 {
		t.Errorf("cursor %d survived Reset", seq)
	}
	// Rebuild: every event applies again.
	if n, err := p.ApplyBatch(context.Background(), events); err != nil || n != 600 {
		t.Fatalf("rebuild applied %d: %v", n, err)
	}
	if all, _ := env.Client.HGet(ctx, p.Key("totals"), "all").Int64(); all != 600 {
		t.Errorf("rebuilt total %d, want 600", all)
	}
}

func TestReplaceFieldsCorrectsAVector(t *testing.T) {
	s, env, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p, err := s.NewAtomicProjection("days", func(e framework.Event, w *redischeckpoint.Writes) error {
		var vals []int64
		for _, f := range strings.Fields(string(e.Data)) {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return err
			}
			vals = append(vals, n)
		}
		fields := []string{"q1", "q2", "q3"}[:len(vals)]
		malo := strings.TrimPrefix(e.StreamID, "process/t/")
		w.ReplaceFields(w.Key("malo", malo), fields, vals, []string{w.Key("sum")}, []string{w.Key("count")})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(stream string, seq uint64, data string) framework.Event {
		return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprint(stream, seq), Data: []byte(data)}
	}
	events := []framework.Event{
		ev("process/t/m1", 1, "10 20 30"),
		ev("process/t/m2", 1, "1 2"),
		ev("process/t/m1", 2, "11 0 30"), // correction of m1: replaces
	}
	if _, err := p.ApplyBatch(ctx, events); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ApplyBatch(ctx, events); err != nil { // redelivered: skipped
		t.Fatal(err)
	}
	sum, _ := env.Client.HGetAll(ctx, p.Key("sum")).Result()
	count, _ := env.Client.HGetAll(ctx, p.Key("count")).Result()
	if fmt.Sprint(sum) != "map[q1:12 q2:2 q3:30]" || fmt.Sprint(count) != "map[q1:2 q2:2 q3:1]" {
		t.Errorf("sum %v count %v, want q1:12 q2:2 q3:30 and q1:2 q2:2 q3:1", sum, count)
	}
	bad, _ := s.NewAtomicProjection("bad", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.ReplaceFields(w.Key("x"), []string{"a", "b"}, []int64{1}, nil, nil)
		return nil
	})
	if _, err := bad.ApplyBatch(ctx, events[:1]); !errors.Is(err, redischeckpoint.ErrInvalidWrite) {
		t.Errorf("mismatched fields and values: %v, want ErrInvalidWrite", err)
	}
}

func TestHeads(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := totalsProjection(t, s)
	a2 := booked("process/t/a", 2, 1)
	a2.Position = &framework.Position{Partition: 3, Offset: 1234}
	if _, err := p.ApplyBatch(ctx, []framework.Event{booked("process/t/a", 1, 1), a2, booked("process/t/b", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	// A cursor moved by a plain Advance has no event at its sequence.
	if err := s.Advance(ctx, "totals", map[string]uint64{"process/t/b": 5, "process/t/c": 3}); err != nil {
		t.Fatal(err)
	}
	heads, err := s.Heads(ctx, "totals", []string{"process/t/a", "process/t/b", "process/t/c", "process/t/none"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"process/t/a": "2 process/t/a#2 3/1234",
		"process/t/b": "5  <nil>",
		"process/t/c": "3  <nil>",
	}
	if len(heads) != len(want) {
		t.Errorf("heads = %v, want %d (none for a stream without a cursor)", heads, len(want))
	}
	for id, w := range want {
		h := heads[id]
		if got := fmt.Sprintf("%d %s %v", h.Sequence, h.EventID, h.Position); got != w {
			t.Errorf("head of %s = %q, want %q", id, got, w)
		}
	}
	if _, err := s.BumpEpoch(ctx, "totals"); err != nil {
		t.Fatal(err)
	}
	if heads, _ := s.Heads(ctx, "totals", []string{"process/t/a"}); len(heads) != 0 {
		t.Errorf("heads survived the epoch bump: %v", heads)
	}
}
