package kafkarunner_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// countingProgress is the Redis store, counting the cursors the runner
// writes in its flushes.
type countingProgress struct {
	*redischeckpoint.Store
	heads, flushes atomic.Int64
}

func (c *countingProgress) AdvancePartition(ctx context.Context, projection string, partition int32, heads []controlplane.StreamHead, next int64) error {
	c.heads.Add(int64(len(heads)))
	c.flushes.Add(1)
	return c.Store.AdvancePartition(ctx, projection, partition, heads, next)
}

// With an AtomicProjection each event's cursor and head are written once,
// by the script that applies the event: the runner's flushes record the
// partitions' progress only. The heads are still there for conflict checks
// after a restart.
func TestAtomicProjectionCursorsAreWrittenOnce(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 30, 3, "process/once/")
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingProgress{Store: f.rstore}
	f.start(t, p, func(c *kafkarunner.Config) { c.Checkpoints = counting })
	f.waitCounts(t, p, want, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for counting.flushes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if counting.flushes.Load() == 0 {
		t.Fatal("the runner never flushed its progress")
	}
	if n := counting.heads.Load(); n != 0 {
		t.Errorf("the runner wrote %d cursors again after the scripts wrote them", n)
	}
	heads, err := f.rstore.Heads(ctxFor(t), f.name, []string{"process/once/00007"})
	if err != nil {
		t.Fatal(err)
	}
	if h := heads["process/once/00007"]; h.Sequence != 3 || h.EventID == "" || h.Position == nil {
		t.Errorf("head of process/once/00007 = %+v, want sequence 3 with its event and position", h)
	}
}
