package kafkarunner_test

import (
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
