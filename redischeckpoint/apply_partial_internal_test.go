package redischeckpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
)

// TestApplyReportsAPartialWrite makes Redis refuse a write the script's
// checks let through (an HSET without its value, which Writes never
// sends: it stands for any failure the checks do not foresee) after an
// earlier write of the same event ran. The script must store the cursors
// of the events before, and the error must say the event is partly
// applied; the projection must not apply that event again.
func TestApplyReportsAPartialWrite(t *testing.T) {
	env := testenv.Redis(t)
	s, err := New(Config{Client: env.Client, Namespace: env.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p, err := s.NewAtomicProjection("p", func(e framework.Event, w *Writes) error {
		w.HIncrBy(w.Key(e.Type), "n", 1)
		if e.Type == "two" {
			w.ops = append(w.ops, op{name: "HSET", args: []string{w.Key("x"), "f"}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var events []framework.Event
	for _, typ := range []string{"one", "two", "three"} {
		events = append(events, framework.Event{StreamID: "process/t/" + typ, Sequence: 1, EventID: typ + "#1", Type: typ})
	}
	n, err := p.ApplyBatch(ctx, events)
	if n != 1 || !errors.Is(err, ErrPartialWrite) || errors.Is(err, ErrWriteRefused) {
		t.Fatalf("ApplyBatch = %d, %v; want 1 and ErrPartialWrite", n, err)
	}
	we, ok := errors.AsType[*WriteError](err)
	if !ok || we.StreamID != "process/t/two" || we.EventID != "two#1" || we.Index != 2 || we.Op != "HSET" || we.Key != p.Key("x") {
		t.Errorf("error %v does not name event two#1, write 2 HSET %s", err, p.Key("x"))
	}
	cursors, err := s.Cursors(ctx, "p", []string{"process/t/one", "process/t/two", "process/t/three"})
	if err != nil {
		t.Fatal(err)
	}
	if cursors["process/t/one"] != 1 || cursors["process/t/two"] != 0 || cursors["process/t/three"] != 0 {
		t.Errorf("cursors %v, want one at 1 and the others at 0", cursors)
	}
	counts := func() []string {
		var out []string
		for _, typ := range []string{"one", "two", "three"} {
			v, _ := env.Client.HGet(ctx, p.Key(typ), "n").Result()
			out = append(out, v)
		}
		return out
	}
	if got := counts(); got[0] != "1" || got[1] != "1" || got[2] != "" {
		t.Errorf("counts %q, want one 1, two 1 (its first write ran), three none", got)
	}
	// The runner retries a failed event: the partly applied one must not
	// run again.
	if n, err := p.ApplyBatch(ctx, events[1:]); n != 0 || !errors.Is(err, ErrPartialWrite) {
		t.Errorf("ApplyBatch again = %d, %v; want 0 and ErrPartialWrite", n, err)
	}
	if got := counts(); got[1] != "1" {
		t.Errorf("event two counted %q after the retry, want 1", got[1])
	}
	// The script parked the stream itself: a process that crashes before
	// it parks the stream leaves no owner free to apply the event again.
	parked, err := s.Parked(ctx, "p")
	if err != nil || len(parked) != 1 || parked[0].StreamID != "process/t/two" || parked[0].Sequence != 1 ||
		parked[0].Reason != controlplane.ParkPartialApply || !strings.Contains(parked[0].Error, "replay") {
		t.Errorf("parked = %+v, %v; want process/t/two at 1, partial-apply", parked, err)
	}
	if !errors.Is(err, nil) || !errors.Is(we, framework.ErrPartialApply) {
		t.Errorf("%v does not match framework.ErrPartialApply", we)
	}
}
