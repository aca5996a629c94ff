package kafkarunner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// recordingHooks counts what the runner reports through its hooks.
type recordingHooks struct {
	mu       sync.Mutex
	applied  map[string]int
	skipped  map[string]int
	parkedAt map[string]controlplane.ParkedStream
}

func (h *recordingHooks) OnEventApplied(_ context.Context, _ string, e framework.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied[e.StreamID]++
}

func (h *recordingHooks) OnEventSkipped(_ context.Context, _ string, e framework.Event, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.skipped[e.StreamID]++
}

func (h *recordingHooks) OnStreamParked(_ context.Context, _ string, p controlplane.ParkedStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.parkedAt[p.StreamID] = p
}

// A payload that does not decode is a permanent error: its stream is parked
// at the first failure, without the retries and backoff an error that may
// pass gets; a Retryable func makes other errors permanent too. Hooks see
// every applied event, every duplicate skipped and the parks.
func TestPermanentErrorsParkAtOnceAndHooksSeeEverything(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	want := f.produce(t, 10, 2, "process/ok/")
	for _, stream := range []string{"process/bad/decode", "process/bad/marked", "process/bad/policy"} {
		if _, err := f.store.Append(ctx, stream, framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Bad"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivery of an applied event (same ID) is skipped; sequence 1
	// again under another ID is a conflict, and parks its stream.
	var first framework.Event
	for e, err := range f.store.ReadStream(ctx, "process/ok/00001", 0) {
		if err != nil {
			t.Fatal(err)
		}
		first = e
		break
	}
	rawEvent(t, f, "process/ok/00001", 1, first.EventID)
	rawEvent(t, f, "process/ok/00000", 1, "another-event")
	var attempts atomic.Int64
	errPolicy := errors.New("refused by policy")
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Bad" {
			attempts.Add(1)
			switch e.StreamID {
			case "process/bad/decode":
				return &framework.DecodeError{StreamID: e.StreamID, Sequence: e.Sequence, EventType: e.Type, Err: errors.New("field amount: not a number")}
			case "process/bad/marked":
				return fmt.Errorf("tariff unknown: %w", framework.ErrPermanent)
			default:
				return errPolicy
			}
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &recordingHooks{applied: map[string]int{}, skipped: map[string]int{}, parkedAt: map[string]controlplane.ParkedStream{}}
	rep := f.start(t, p, func(c *kafkarunner.Config) {
		c.Retry = kafkarunner.RetryPolicy{Attempts: 5, Initial: time.Hour} // a retry would stall the test
		c.Retryable = func(err error) bool { return !errors.Is(err, errPolicy) }
		c.Hooks = []kafkarunner.Hook{h}
	})
	want["process/bad/decode"], want["process/bad/marked"], want["process/bad/policy"] = 1, 1, 1
	f.waitCounts(t, p, want, time.Minute)
	parked := waitParked(t, rep, 4)
	byStream := map[string]controlplane.ParkedStream{}
	for _, ps := range parked {
		byStream[ps.StreamID] = ps
	}
	for _, stream := range []string{"process/bad/decode", "process/bad/marked", "process/bad/policy"} {
		ps, ok := byStream[stream]
		if !ok || ps.Reason != controlplane.ParkApplyFailed || ps.Sequence != 2 || ps.Attempts != 1 {
			t.Errorf("%s parked as %+v, want apply-failed at 2 after 1 attempt", stream, ps)
		}
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("the failing events were applied %d times, want once each", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for stream, n := range want {
		if h.applied[stream] != int(n) {
			t.Errorf("hook saw %d events of %s applied, want %d", h.applied[stream], stream, n)
		}
	}
	if h.skipped["process/ok/00001"] != 1 {
		t.Errorf("hook saw %d events of process/ok/00001 skipped, want the redelivery", h.skipped["process/ok/00001"])
	}
	for _, stream := range []string{"process/bad/decode", "process/bad/marked", "process/bad/policy", "process/ok/00000"} {
		if _, ok := h.parkedAt[stream]; !ok {
			t.Errorf("hook did not see %s parked", stream)
		}
	}
}
