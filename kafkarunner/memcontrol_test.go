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
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
)

// memCounter counts events per stream in memory; events of type "Poison"
// fail while poisoned is set.
type memCounter struct {
	mu       sync.Mutex
	counts   map[string]int64
	poisoned atomic.Bool
	name     string
}

func (c *memCounter) Name() string { return c.name }

func (c *memCounter) Apply(_ context.Context, e framework.Event) error {
	if e.Type == "Poison" && c.poisoned.Load() {
		return errors.New("cannot apply poison")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[e.StreamID]++
	return nil
}

func (c *memCounter) equal(want map[string]int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range want {
		if c.counts[id] != n {
			return false
		}
	}
	return true
}

// The runner on the real broker with its control plane in memory
// (memcontrol): every capability is found, a failing stream parks there and
// an admin's retry through the runner resumes it.
func TestRunnerOnTheInMemoryControlPlane(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	want := f.produce(t, 20, 3, "process/mem/")
	if _, err := f.store.Append(ctx, "process/poison/1", framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Poison"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	p := &memCounter{counts: map[string]int64{}, name: f.name}
	p.poisoned.Store(true)
	cp := memcontrol.NewStore()
	rep := f.start(t, p, func(c *kafkarunner.Config) { c.Checkpoints = cp })
	if caps := rep.r.Capabilities(); !caps.Fencing || !caps.Progress || !caps.Parking || !caps.Control {
		t.Fatalf("capabilities on memcontrol: %s", caps)
	}
	// The group member shows as the replica, not as "kgo".
	waitFor(t, time.Minute, "the member's client ID", func() (bool, string) {
		groups, err := f.env.Admin(t).DescribeGroups(ctx, f.name)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range groups[f.name].Members {
			if m.ClientID == rep.r.ReplicaID() {
				return true, ""
			}
		}
		return false, fmt.Sprint(groups[f.name].Members)
	})
	want["process/poison/1"] = 1
	waitFor(t, time.Minute, "counts", func() (bool, string) { return p.equal(want), "" })
	parked := waitParked(t, rep, 1)
	if parked[0].StreamID != "process/poison/1" || parked[0].Sequence != 2 || parked[0].Reason != controlplane.ParkApplyFailed {
		t.Fatalf("parked %+v, want process/poison/1 at 2 (apply-failed)", parked[0])
	}
	p.poisoned.Store(false)
	if err := rep.r.RetryParked(ctx, "process/poison/1", "test", "fixed"); err != nil {
		t.Fatal(err)
	}
	want["process/poison/1"] = 3
	waitFor(t, time.Minute, "counts", func() (bool, string) { return p.equal(want), "" })
	waitParkedOnly(t, rep)
	audit, err := cp.Resolutions(ctx, f.name, 10)
	if err != nil || len(audit) != 1 || audit[0].Action != controlplane.ResolveRetry {
		t.Errorf("audit %+v, %v; want the retry", audit, err)
	}
}
