package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestReplayClearsParkedStreams: a stream parked before a replay is
// rebuilt from its first event (its park cleared and recorded), and a
// stream that parks during the rebuild makes replay --wait fail naming it.
func TestReplayClearsParkedStreams(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	ctx := context.Background()
	f.produce(10, 3)
	const id = "process/poison/a"
	if _, err := f.store.Append(ctx, id, framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Poison"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	var buggy atomic.Bool
	buggy.Store(true)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && buggy.Load() {
			return errors.New("poison")
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := kafkarunner.New(kafkarunner.Config{
		Seeds: f.kafka.Seeds, Topic: f.store.Config().Topic, Projection: p, Checkpoints: f.rstore, Events: f.store,
		FlushInterval: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond, ParkedRefresh: 200 * time.Millisecond,
		Retry: kafkarunner.RetryPolicy{Attempts: 2, Initial: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	f.produced[id] = 1
	f.waitCounts(time.Minute)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if parked, _ := f.rstore.Parked(ctx, f.name); len(parked) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poison event was not parked")
		}
	}

	// Still buggy: the stream parks again during the rebuild.
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait", "--empty-timeout", "1m", "--reason", "test")
	if code == exitOK || !strings.Contains(errOut, "parked during it") || !strings.Contains(errOut, id) {
		t.Fatalf("replay with a stream parked in the rebuild: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "cleared 1 parked stream(s) of epoch 0") || !strings.Contains(out, id) {
		t.Errorf("the replay does not list the park it cleared:\n%s", out)
	}

	// Fixed: a second replay rebuilds the stream whole.
	buggy.Store(false)
	code, out, errOut = f.ctl("", "replay", f.name, "--yes", "--wait", "--empty-timeout", "1m", "--reason", "the poison bug is fixed")
	if code != exitOK {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.produced[id] = 3
	f.waitCounts(time.Minute)
	if parked, _ := f.rstore.Parked(ctx, f.name); len(parked) != 0 {
		t.Errorf("parked after the replay: %+v", parked)
	}
	res, err := f.rstore.Resolutions(ctx, f.name, 10)
	if err != nil || len(res) != 2 || res[0].Action != controlplane.ResolveReplay || res[0].StreamID != id {
		t.Errorf("resolutions = %+v, %v; want the two parks cleared by the replays", res, err)
	}
}

// failingReset is a projection whose Reset fails the first times.
type failingReset struct {
	*redischeckpoint.AtomicProjection
	failures atomic.Int32
	slow     time.Duration
	resets   atomic.Int32
}

func (p *failingReset) Reset(ctx context.Context) error {
	p.resets.Add(1)
	if p.failures.Add(-1) >= 0 {
		return errors.New("the read model's store refused the reset")
	}
	select {
	case <-time.After(p.slow):
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.AtomicProjection.Reset(ctx)
}

// TestReplayAfterAFailedOrSlowReset: the replica whose reset fails
// releases its claim, so a replica resets at once (not after the claim's
// 5 minutes as before); a reset slower than the claim's lifetime renews its
// claim, so no second replica resets too.
func TestReplayAfterAFailedOrSlowReset(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(20, 3)
	p := &failingReset{AtomicProjection: f.projection(), slow: 45 * time.Second}
	p.failures.Store(1)
	start := func() {
		r, err := kafkarunner.New(kafkarunner.Config{
			Seeds: f.kafka.Seeds, Topic: f.store.Config().Topic, Projection: p, Checkpoints: f.rstore, Events: f.store,
			FlushInterval: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	start()
	start()
	f.waitCounts(time.Minute)
	began := time.Now()
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait", "--wait-timeout", "3m", "--reason", "test")
	if code != exitOK {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.waitCounts(time.Minute)
	took := time.Since(began)
	// One failed reset, then one that completed: the slow one (45 s, more
	// than the claim's 30 s) was not done a second time.
	if n := p.resets.Load(); n != 2 {
		t.Errorf("%d resets, want 2 (one failed, one slow)", n)
	}
	if took > 2*time.Minute {
		t.Errorf("the replay took %s: the failed reset's claim held the others back", took)
	}
	t.Logf("replay with a failed and a slow reset took %s", took.Round(time.Second))
}

// TestReplayToATimeKeepsTheModel: a replay to a time moves the offsets back
// and keeps the epoch, the read model and its cursors: nothing is counted
// twice, nothing dropped (before, it dropped the model and rebuilt it from
// the middle of the topic, and every stream that started earlier was
// incomplete). A replay to a time that would move offsets forward, past
// events never processed, is refused.
func TestReplayToATimeKeepsTheModel(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(20, 3)
	f.start(false)
	f.waitCounts(time.Minute)
	mid := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)
	f.produce(20, 2)
	f.waitCounts(time.Minute)
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait", "--wait-timeout", "2m", "--to-time", mid.Format(time.RFC3339Nano), "--reason", "re-deliver")
	if code != exitOK || !strings.Contains(out, "keeps the read model") || !strings.Contains(out, "cursors kept") {
		t.Fatalf("replay to a time: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	f.waitCounts(time.Minute)
	time.Sleep(2 * time.Second)
	f.waitCounts(10 * time.Second) // still exact: nothing applied twice
	if epoch, _ := f.rstore.Epoch(context.Background(), f.name); epoch != 0 {
		t.Errorf("epoch %d after a replay that keeps the model, want 0", epoch)
	}

	// A group that processed nothing: a replay to now would skip every event.
	g := newFixture(t)
	g.produce(5, 2)
	code, out, errOut = g.ctl("", "replay", g.name, "--yes", "--to-time", time.Now().UTC().Format(time.RFC3339Nano))
	if code != exitRefused || !strings.Contains(errOut, "would move offsets forward") {
		t.Fatalf("a forward replay: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
