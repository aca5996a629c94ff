package kafkarunner_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
)

// joinWatch is a franz-go hook that reports every JoinGroup request the
// client writes.
type joinWatch chan struct{}

func (w joinWatch) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 11 && err == nil { // JoinGroup
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// TestShutdownWhileARebalanceWaitsForACrashedMember: replica b is told to
// stop while the group rebalances and the broker holds b's JoinGroup
// waiting for static member "a", SIGKILLed (it sent no LeaveGroup; its
// session of 60 s has not expired). franz-go holds commits during a join
// and its Close waits for the JoinGroup, sent on the client's context,
// which leaving does not cancel: before the fix, Run returned only when
// the broker gave up on a (about a minute, the CI failure of
// TestStaticMemberRestartedAfterSIGKILL). Now Run returns within its
// ShutdownTimeout and a few seconds, b has left the group (its own
// LeaveGroup, whether b is a static or a dynamic member), and once a
// restarts every event, before and after, is applied exactly once: b's
// final cursors are stored even though its commit was given up.
func TestShutdownWhileARebalanceWaitsForACrashedMember(t *testing.T) {
	for _, static := range []bool{true, false} {
		name := "b dynamic"
		if static {
			name = "b static"
		}
		t.Run(name, func(t *testing.T) { testShutdownWhileARebalanceWaits(t, static) })
	}
}

func testShutdownWhileARebalanceWaits(t *testing.T, static bool) {
	f := newFixture(t, 6)
	requireEnvServers(t, f)
	want := f.produce(t, 500, 20, "process/t/")
	p := f.counter(t)
	a := startStatic(t, f, os.Stderr, "a")
	const shutdownTimeout = 4 * time.Second
	joins := make(joinWatch, 1)
	b := f.start(t, p, func(c *kafkarunner.Config) {
		c.SessionTimeout, c.HeartbeatInterval = time.Minute, 200*time.Millisecond
		if static {
			c.InstanceID = "b"
		}
		c.ShutdownTimeout = shutdownTimeout
		c.ClientOpts = append(c.ClientOpts, kgo.WithHooks(joins))
	})
	bKey := "" // members() files dynamic members under ""
	if static {
		bKey = "b"
	}
	bID := f.waitMembers(t, "a and b with three partitions each", func(m map[string]member) bool {
		return len(m) == 2 && len(m["a"].partitions) == 3 && len(m[bKey].partitions) == 3
	})[bKey].id
	waitApplied(t, f, p, 2_000)

	if err := a.Process.Kill(); err != nil { // SIGKILL: no LeaveGroup
		t.Fatal(err)
	}
	_, _ = a.Process.Wait()
	select {
	case <-joins: // b's first join
	default:
	}
	// A third replica joins: the group rebalances, and the broker holds
	// the JoinGroup of every member until a rejoins or its session ends.
	f.start(t, p, nil)
	select {
	case <-joins:
	case <-time.After(time.Minute):
		t.Fatal("replica b never rejoined after replica c joined the group")
	}
	time.Sleep(500 * time.Millisecond) // the JoinGroup reaches the broker

	b.once.Do(func() {}) // stopped here, not by the cleanup
	b.cancel()
	stopped := time.Now()
	select {
	case err := <-b.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(shutdownTimeout + 20*time.Second):
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 2)
		t.Fatalf("Run did not return within %v of cancel (ShutdownTimeout %v) while a rebalance waited for a crashed member; goroutines:\n%s",
			time.Since(stopped), shutdownTimeout, stacks.String())
	}
	t.Logf("Run returned %v after cancel (ShutdownTimeout %v)", time.Since(stopped).Round(time.Millisecond), shutdownTimeout)
	if ids := f.memberIDs(t); slices.Contains(ids, bID) {
		t.Errorf("b (%s) is still a member of the group after its shutdown: %v", bID, ids)
	}

	// The restart under "a" completes the rebalance; a and c apply the
	// rest and what comes next.
	startStatic(t, f, os.Stderr, "a")
	for id, n := range f.produce(t, 200, 5, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, 3*time.Minute)
}

// memberIDs lists the member IDs of f's group.
func (f *fixture) memberIDs(t *testing.T) []string {
	t.Helper()
	described, err := f.env.Admin(t).DescribeGroups(ctxFor(t), f.name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range described[f.name].Members {
		ids = append(ids, m.MemberID)
	}
	return ids
}

// slowCounter is a plainCounter (not atomic with its cursors) that takes
// delay per event.
type slowCounter struct {
	plainCounter
	delay time.Duration
}

func (c *slowCounter) Apply(ctx context.Context, e framework.Event) error {
	select {
	case <-time.After(c.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.plainCounter.Apply(ctx, e)
}

// TestRevokeWhileShuttingDown: replica a is stopping (its workers finish
// their batches of slow events) when replica b joins, and the group
// revokes one of a's partitions in the middle of that. The revoke must
// wait for the worker the shutdown is already stopping: before, it found
// the partition gone from the runner's table and returned at once, the
// group gave the partition to b, and b read from the last commit while a
// still applied: with a projection that is not atomic with its cursors,
// events were applied twice.
func TestRevokeWhileShuttingDown(t *testing.T) {
	f := newFixture(t, 2)
	pc := &slowCounter{plainCounter: plainCounter{name: f.name, rdb: f.rdb, key: f.ns + ":plain-counts"}, delay: 200 * time.Millisecond}
	want := f.produce(t, 20, 10, "process/t/")
	counts := func() (map[string]int64, int64) {
		raw, err := f.rdb.HGetAll(ctxFor(t), pc.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		out, sum := map[string]int64{}, int64(0)
		for k, v := range raw {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k], sum = n, sum+n
		}
		return out, sum
	}
	a := f.start(t, pc, func(c *kafkarunner.Config) {
		fast(c)
		c.BatchSize, c.HeartbeatInterval = 40, 200*time.Millisecond
		c.FlushInterval = time.Hour // no flush but the one the stop makes
		c.RevokeTimeout = time.Minute
	})
	waitFor(t, time.Minute, "replica a in the middle of its first batches", func() (bool, string) {
		_, sum := counts()
		return sum >= 10, fmt.Sprint(sum)
	})
	a.once.Do(func() {}) // stopped here, not by the cleanup
	a.cancel()
	f.start(t, pc, func(c *kafkarunner.Config) {
		fast(c)
		c.HeartbeatInterval, c.RevokeTimeout = 200*time.Millisecond, time.Minute
	})
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("Run of a: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("replica a did not stop within a minute")
	}
	waitFor(t, 2*time.Minute, "every event applied once", func() (bool, string) {
		got, _ := counts()
		for id, n := range got {
			if n > want[id] {
				t.Fatalf("stream %s applied %d times, has %d events: events applied twice (counts %v)", id, n, want[id], got)
			}
		}
		return maps.Equal(got, want), fmt.Sprint(got)
	})
	time.Sleep(2 * time.Second) // anything read twice would be applied by now
	if got, _ := counts(); !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v: events applied twice", got, want)
	}
}

// TestReassignedPartitionWaitsForItsPreviousWorker: the projection hangs
// on one event, ignoring its context. A pause stops the membership: the
// hung worker outlives the shutdown deadline and is left behind. On
// resume the group assigns the partition to the same runner again: the
// new worker waits for the one left behind (up to RevokeTimeout) instead
// of applying beside it; once the hang ends, every event is applied once.
func TestReassignedPartitionWaitsForItsPreviousWorker(t *testing.T) {
	f := newFixture(t, 1)
	hung := "process/hung/0"
	p, hangs, released := hungCounter(t, f, hung)
	defer released() // before the replica stops: Run waits for the hung goroutine
	want := f.produce(t, 5, 3, "process/t/")
	want[hung] = 2
	rep := f.start(t, p, func(c *kafkarunner.Config) {
		fast(c)
		c.ShutdownTimeout, c.RevokeTimeout = time.Second, time.Minute
	})
	waitFor(t, time.Minute, "the projection hangs", func() (bool, string) { return hangs.Load() == 1, "" })

	if err := f.rstore.SetPaused(ctxFor(t), f.name, true, "test", "stop the membership"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the paused replica without partitions", func() (bool, string) {
		return len(rep.r.Assigned()) == 0, fmt.Sprint(rep.r.Assigned())
	})
	if err := f.rstore.SetPaused(ctxFor(t), f.name, false, "test", "consume again"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the partition assigned again", func() (bool, string) {
		return len(rep.r.Assigned()) == 1, fmt.Sprint(rep.r.Assigned())
	})
	time.Sleep(2 * time.Second) // a worker that did not wait would reach the hung event by now
	if n := hangs.Load(); n != 1 {
		t.Errorf("%d workers applied the hung event: the new worker did not wait for the one left behind", n)
	}
	released()
	f.waitCounts(t, p, want, time.Minute)
}
