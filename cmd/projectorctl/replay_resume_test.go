package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/controlplane"
)

// interrupted records a replay to the start as projectorctl does before
// its first step, as if the command had died right after: phase pausing,
// the epoch it starts from, the start offsets (when start is set).
func (f *fixture) interrupted(t *testing.T, id string, withStart bool) *controlplane.Replay {
	t.Helper()
	ctx := context.Background()
	epoch, err := f.rstore.Epoch(ctx, f.name)
	if err != nil {
		t.Fatal(err)
	}
	rec := &controlplane.Replay{ID: id, By: "tester", To: "start", Phase: controlplane.ReplayPausing, Epoch: epoch, StartedAt: time.Now().UTC()}
	if withStart {
		listed, err := f.kafka.Admin(t).ListStartOffsets(ctx, f.store.Config().Topic)
		if err != nil {
			t.Fatal(err)
		}
		rec.Start = map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) { rec.Start[o.Partition] = o.Offset })
	}
	if err := f.rstore.SetReplay(ctx, f.name, rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// begin runs the replay's first step as the interrupted command did.
func (f *fixture) begin(t *testing.T, rec *controlplane.Replay) {
	t.Helper()
	begun, err := f.rstore.BeginReplay(context.Background(), f.name, rec.Epoch, "tester", "replay "+rec.ID, rec.Start)
	if err != nil || !begun.Raised {
		t.Fatalf("BeginReplay = %+v, %v", begun, err)
	}
}

func (f *fixture) waitGroupEmpty(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		described, err := f.kafka.Admin(t).DescribeGroups(context.Background(), f.name)
		if err == nil && len(described[f.name].Members) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not empty: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fixture) epoch(t *testing.T) uint64 {
	t.Helper()
	epoch, err := f.rstore.Epoch(context.Background(), f.name)
	if err != nil {
		t.Fatal(err)
	}
	return epoch
}

// TestReplayResumeAndAbortFromEachPhase: a replay to the start interrupted
// at each point (before its first step, after it, after the group emptied)
// is completed by replay --resume, which raises the epoch exactly once in
// all; --abort gives up a replay before its first step with nothing
// changed, and after it warns that the read model is dropped. Events keep
// flowing: at the end of each the read model is exact.
func TestReplayResumeAndAbortFromEachPhase(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(30, 2)
	f.start(false)
	f.start(false)
	f.waitCounts(time.Minute)

	resume := func(t *testing.T, from uint64) {
		t.Helper()
		f.produce(30, 1)
		code, out, errOut := f.ctl("", "replay", f.name, "--resume", "--wait", "--empty-timeout", "1m")
		if code != exitOK || !strings.Contains(out, "resuming replay") || !strings.Contains(out, "offsets reset to start") {
			t.Fatalf("replay --resume exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		f.waitCounts(time.Minute)
		if got := f.epoch(t); got != from+1 {
			t.Errorf("epoch %d after the resumed replay from epoch %d, want %d (raised once)", got, from, from+1)
		}
		ctl, _ := f.rstore.Control(context.Background(), f.name)
		if ctl.Paused || ctl.ResetDone != from+1 || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayDone || ctl.Replay.Error != "" {
			t.Errorf("control after the resumed replay = %+v (replay %+v)", ctl, ctl.Replay)
		}
	}

	t.Run("ResumeBeforeTheFirstStep", func(t *testing.T) {
		rec := f.interrupted(t, "before-begin", false)
		resume(t, rec.Epoch)
	})
	t.Run("ResumeAfterTheFirstStep", func(t *testing.T) {
		rec := f.interrupted(t, "after-begin", true)
		f.begin(t, rec)
		resume(t, rec.Epoch)
	})
	t.Run("ResumeAfterTheGroupEmptied", func(t *testing.T) {
		rec := f.interrupted(t, "resetting", true)
		f.begin(t, rec)
		f.waitGroupEmpty(t)
		rec.Phase = controlplane.ReplayResetting
		if err := f.rstore.SetReplay(context.Background(), f.name, rec); err != nil {
			t.Fatal(err)
		}
		resume(t, rec.Epoch)
	})
	t.Run("AbortBeforeTheFirstStep", func(t *testing.T) {
		rec := f.interrupted(t, "abort-before", false)
		code, out, errOut := f.ctl("", "replay", f.name, "--abort")
		if code != exitOK || !strings.Contains(out, "aborted in phase pausing") || strings.Contains(out, "warning") {
			t.Fatalf("replay --abort exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if got := f.epoch(t); got != rec.Epoch {
			t.Errorf("epoch %d after an abort before the first step, want %d", got, rec.Epoch)
		}
		// Once more: nothing left to abort, nothing changes.
		if code, _, errOut := f.ctl("", "replay", f.name, "--abort"); code != exitRefused || !strings.Contains(errOut, "no replay") {
			t.Errorf("a second --abort: exit %d %s", code, errOut)
		}
		ctl, _ := f.rstore.Control(context.Background(), f.name)
		if ctl.Paused || ctl.Replay == nil || ctl.Replay.Phase != controlplane.ReplayAborted || ctl.ResetEpoch != rec.Epoch {
			t.Errorf("control after the abort = %+v (replay %+v)", ctl, ctl.Replay)
		}
		f.produce(30, 1)
		f.waitCounts(time.Minute) // nothing dropped, nothing counted twice
	})
	t.Run("AbortAfterTheFirstStep", func(t *testing.T) {
		rec := f.interrupted(t, "abort-after", true)
		f.begin(t, rec)
		code, out, errOut := f.ctl("", "replay", f.name, "--abort")
		if code != exitOK || !strings.Contains(out, fmt.Sprintf("warning: the epoch was raised to %d", rec.Epoch+1)) || !strings.Contains(out, "run a new replay") {
			t.Fatalf("replay --abort exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		// The documented remedy: a new replay rebuilds the model whole.
		code, out, errOut = f.ctl("", "replay", f.name, "--yes", "--wait", "--empty-timeout", "1m")
		if code != exitOK {
			t.Fatalf("replay after the abort: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		f.waitCounts(time.Minute)
		if got := f.epoch(t); got != rec.Epoch+2 {
			t.Errorf("epoch %d, want %d", got, rec.Epoch+2)
		}
	})
}
