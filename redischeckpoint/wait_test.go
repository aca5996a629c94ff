package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
)

// tripCounter is a go-redis hook that records every round trip of a client
// (a command or a pipeline) with the names of its commands.
type tripCounter struct {
	mu    sync.Mutex
	trips [][]string
}

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.record([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.record(cmds)
		return next(ctx, cmds)
	}
}

func (c *tripCounter) record(cmds []redis.Cmder) {
	names := make([]string, len(cmds))
	for i, cmd := range cmds {
		names[i] = cmd.Name()
	}
	c.mu.Lock()
	c.trips = append(c.trips, names)
	c.mu.Unlock()
}

// since returns the round trips recorded since mark (a length of trips).
func (c *tripCounter) since(mark int) [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.trips[mark:])
}

func (c *tripCounter) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.trips)
}

// waitFixture is a projection "rw" with a Store whose round trips are
// counted (the waiting side) and one that writes (the projecting side),
// in a namespace of the test's own.
type waitFixture struct {
	env     *testenv.RedisEnv
	ns      string
	waits   *Store // its client counts round trips
	writes  *Store
	p       *AtomicProjection // "rw", version 0, written by writes
	counter *tripCounter
}

func newWaitFixture(t *testing.T, client redis.UniversalClient) *waitFixture {
	t.Helper()
	env := testenv.Redis(t)
	f := &waitFixture{env: env, ns: env.Prefix(t), counter: &tripCounter{}}
	if client == nil {
		c := redis.NewClient(&redis.Options{Addr: env.Addr})
		t.Cleanup(func() { _ = c.Close() })
		client = c
	}
	client.AddHook(f.counter)
	var err error
	if f.waits, err = New(Config{Client: client, Namespace: f.ns}); err != nil {
		t.Fatal(err)
	}
	if f.writes, err = New(Config{Client: env.Client, Namespace: f.ns}); err != nil {
		t.Fatal(err)
	}
	f.p, err = f.writes.NewAtomicProjection("rw", func(e framework.Event, w *Writes) error {
		w.HIncrBy(w.Key("events"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// apply applies events from+1..to of each stream to p.
func apply(t *testing.T, ctx context.Context, p *AtomicProjection, from, to uint64, streams ...string) {
	t.Helper()
	var events []framework.Event
	for _, id := range streams {
		for seq := from + 1; seq <= to; seq++ {
			events = append(events, framework.Event{StreamID: id, Sequence: seq, EventID: fmt.Sprintf("%s#%d", id, seq), Type: "x"})
		}
	}
	if n, err := p.ApplyBatch(ctx, events); err != nil || n != len(events) {
		t.Fatalf("apply to %s: %d of %d events, %v", p.Name(), n, len(events), err)
	}
}

// watcherOf returns the running watcher of s's projection and how many
// waiters it has (nil, 0 when none runs).
func watcherOf(s *Store, projection string) (*watcher, int) {
	watchers.Lock()
	defer watchers.Unlock()
	w := watchers.m[watchKey{s, projection}]
	if w == nil {
		return nil, 0
	}
	return w, len(w.waiters)
}

func eventually(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
	}
}

type waitResult struct {
	name string
	err  error
	at   time.Time
}

// startWaits starts one WaitFor per stream (n waiters over the streams,
// round robin) and returns their results' channel.
func startWaits(ctx context.Context, s *Store, n int, seq uint64, streams []string) <-chan waitResult {
	out := make(chan waitResult, n)
	for i := range n {
		go func() {
			name, err := s.WaitFor(ctx, "rw", streams[i%len(streams)], seq)
			out <- waitResult{name, err, time.Now()}
		}()
	}
	return out
}

func streamIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("process/t1/m-%04d", i)
	}
	return ids
}

// TestWaitForSharesOneWatcher has 500 concurrent waiters on 250 streams
// and checks that they cost one round trip per tick of the same three
// commands as one waiter does (the live pointer, one HMGET of cursors, one
// of parked streams), that they are released when the cursors reach their
// sequence, and that the watcher stops when none are left.
func TestWaitForSharesOneWatcher(t *testing.T) {
	f := newWaitFixture(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	streams := streamIDs(250)
	apply(t, ctx, f.p, 0, 1, streams...)

	// Already covered: released by the watcher's first check.
	mark := f.counter.mark()
	res := startWaits(ctx, f.waits, 500, 1, streams)
	for range 500 {
		if r := <-res; r.err != nil || r.name != "rw" {
			t.Fatalf("a waiter for a covered sequence: %q, %v", r.name, r.err)
		}
	}
	eventually(t, "the watcher stops once its waiters are released", time.Second, func() bool { w, _ := watcherOf(f.waits, "rw"); return w == nil })
	t.Logf("500 waiters for covered sequences: %d round trips", len(f.counter.since(mark)))

	// perTick measures the watcher's round trips over a window while n
	// waiters wait for sequence 2.
	perTick := func(n int, streams []string) (trips [][]string, results <-chan waitResult) {
		results = startWaits(ctx, f.waits, n, 2, streams)
		eventually(t, fmt.Sprintf("%d waiters registered", n), 10*time.Second, func() bool { _, k := watcherOf(f.waits, "rw"); return k == n })
		w, _ := watcherOf(f.waits, "rw")
		mark := f.counter.mark()
		time.Sleep(400 * time.Millisecond)
		trips = f.counter.since(mark)
		if w2, k := watcherOf(f.waits, "rw"); w2 != w || k != n {
			t.Fatalf("the watcher changed or lost waiters (%d of %d) while nothing moved", k, n)
		}
		return trips, results
	}
	solo := "process/t1/solo"
	apply(t, ctx, f.p, 0, 1, solo)
	oneTrips, oneRes := perTick(1, []string{solo})
	apply(t, ctx, f.p, 1, 2, solo)
	if r := <-oneRes; r.err != nil || r.name != "rw" {
		t.Fatalf("one waiter: %q, %v", r.name, r.err)
	}
	eventually(t, "the watcher stops", time.Second, func() bool { w, _ := watcherOf(f.waits, "rw"); return w == nil })
	manyTrips, manyRes := perTick(500, streams)

	for _, c := range []struct {
		waiters int
		trips   [][]string
	}{{1, oneTrips}, {500, manyTrips}} {
		commands := 0
		for _, trip := range c.trips {
			commands += len(trip)
			if !slices.Equal(trip, []string{"hget", "hmget", "hmget"}) {
				t.Errorf("%d waiters: a round trip of %v, want [hget hmget hmget]", c.waiters, trip)
			}
		}
		// 400 ms at 20 ms a tick: at most about 20 round trips, whatever
		// the waiters (fewer on a busy machine, when ticks are dropped).
		if len(c.trips) < 1 || len(c.trips) > 25 {
			t.Errorf("%d waiters: %d round trips in 400 ms, want 1 to 25 (a tick is 20 ms)", c.waiters, len(c.trips))
		}
		t.Logf("%3d waiters: %d round trips in 400 ms, %d commands (%.1f per round trip)", c.waiters, len(c.trips), commands,
			float64(commands)/float64(max(len(c.trips), 1)))
	}

	// Half the streams reach 2: their waiters (and only they) go.
	released := time.Now()
	apply(t, ctx, f.p, 1, 2, streams[:124]...)
	for range 500 / 250 * 124 {
		r := <-manyRes
		if r.err != nil || r.name != "rw" {
			t.Fatalf("a waiter: %q, %v", r.name, r.err)
		}
	}
	t.Logf("248 waiters released within %v of the apply", time.Since(released).Round(time.Millisecond))
	time.Sleep(100 * time.Millisecond)
	if _, k := watcherOf(f.waits, "rw"); k != 500-248 {
		t.Fatalf("%d waiters left, want %d", k, 500-248)
	}
	apply(t, ctx, f.p, 1, 2, streams[124:]...)
	for range 500 - 248 {
		if r := <-manyRes; r.err != nil || r.name != "rw" {
			t.Fatalf("a waiter: %q, %v", r.name, r.err)
		}
	}
	eventually(t, "the watcher stops", time.Second, func() bool { w, _ := watcherOf(f.waits, "rw"); return w == nil })
	mark = f.counter.mark()
	time.Sleep(100 * time.Millisecond)
	if trips := f.counter.since(mark); len(trips) != 0 {
		t.Errorf("%d round trips without waiters: %v", len(trips), trips)
	}
}

func TestWaitForParkedStream(t *testing.T) {
	f := newWaitFixture(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, b, c := "process/t1/a", "process/t1/b", "process/t1/c"
	apply(t, ctx, f.p, 0, 1, a, b, c)
	parkedAt := time.Now().UTC()
	park := func(stream string, seq uint64) {
		t.Helper()
		err := f.writes.Park(ctx, "rw", controlplane.ParkedStream{StreamID: stream, Sequence: seq, EventID: "e", Reason: controlplane.ParkConflict,
			Error: "sequence 2 repeats with another event ID", ParkedAt: parkedAt})
		if err != nil {
			t.Fatal(err)
		}
	}
	park(a, 2)

	// Parked at 2: waiting for 2 or later fails at once, not at the deadline.
	start := time.Now()
	_, err := f.waits.WaitFor(ctx, "rw", a, 3)
	var pe *StreamParkedError
	if !errors.Is(err, ErrStreamParked) || !errors.As(err, &pe) || time.Since(start) > time.Second {
		t.Fatalf("wait for a parked stream: %v after %v", err, time.Since(start))
	}
	if pe.ReadModel != "rw" || pe.StreamID != a || pe.Sequence != 3 || pe.Applied != 1 || pe.Parked.Sequence != 2 || pe.Parked.Reason != controlplane.ParkConflict {
		t.Errorf("parked error %+v", pe)
	}
	want := "redischeckpoint: rw cannot apply process/t1/a up to 3: the stream is parked at sequence 2 (conflict): sequence 2 repeats with another event ID"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	// What the stream applied before it parked is covered.
	if name, err := f.waits.WaitFor(ctx, "rw", a, 1); err != nil || name != "rw" {
		t.Errorf("wait for an applied sequence of a parked stream: %q, %v", name, err)
	}

	// A waiter that waits when its stream parks learns it at the next tick.
	done := make(chan error, 1)
	go func() { _, err := f.waits.WaitFor(ctx, "rw", b, 2); done <- err }()
	eventually(t, "the waiter registered", 5*time.Second, func() bool { _, n := watcherOf(f.waits, "rw"); return n == 1 })
	select {
	case err := <-done:
		t.Fatalf("the waiter ended before its stream parked: %v", err)
	case <-time.After(60 * time.Millisecond):
	}
	park(b, 2)
	select {
	case err := <-done:
		if !errors.Is(err, ErrStreamParked) {
			t.Errorf("waiter when its stream parked: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiter did not learn that its stream parked")
	}

	// Parked above the awaited sequence: the wait goes on (and ends when
	// the cursor covers it).
	park(c, 3)
	go func() { _, err := f.waits.WaitFor(ctx, "rw", c, 2); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a wait for a sequence below the parked one ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	apply(t, ctx, f.p, 1, 2, c)
	if err := <-done; err != nil {
		t.Errorf("after the cursor reached 2: %v", err)
	}
}

// TestWaitForFollowsTheLivePointer waits while a rebuild builds version 1
// beside version 0: the cursors of the building version do not count
// until it is live; after the switch, they do.
func TestWaitForFollowsTheLivePointer(t *testing.T) {
	f := newWaitFixture(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s := "process/t1/live"
	apply(t, ctx, f.p, 0, 1, s)
	r, err := f.writes.StartRebuild(ctx, "rw", controlplane.Rebuild{By: "test", Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := f.p.Version(framework.VersionedName("rw", r.Version))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		name string
		err  error
	}
	done := make(chan result, 1)
	go func() { name, err := f.waits.WaitFor(ctx, "rw", s, 3); done <- result{name, err} }()
	apply(t, ctx, v1, 0, 3, s) // the building version is ahead; it is not live
	select {
	case r := <-done:
		t.Fatalf("the wait ended on a version that is not live: %+v", r)
	case <-time.After(150 * time.Millisecond):
	}
	if _, err := f.writes.SwitchLive(ctx, "rw", r.Version, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.name != "rw@v1" {
			t.Fatalf("after the switch: %q, %v; want rw@v1", r.name, r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the switch did not end the wait")
	}
	eventually(t, "the watcher stops", time.Second, func() bool { w, _ := watcherOf(f.waits, "rw"); return w == nil })

	// A new watcher finds the live version itself; version 0 (closed,
	// at 1) no longer counts.
	if name, err := f.waits.WaitFor(ctx, "rw", s, 2); err != nil || name != "rw@v1" {
		t.Errorf("a wait after the switch: %q, %v", name, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = f.waits.WaitFor(short, "rw", s, 5)
	want := "redischeckpoint: rw@v1 has applied process/t1/live up to 3, waiting for 5: context deadline exceeded"
	var we *WaitError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &we) || err.Error() != want {
		t.Fatalf("deadline: %v\nwant       %s", err, want)
	}
	if we.ReadModel != "rw@v1" || we.Applied != 3 || we.Sequence != 5 || !we.Checked || we.LastError != nil {
		t.Errorf("wait error %+v", we)
	}

	// The live pointer written by hand (an older tool, an operator) counts
	// as well, also back to version 0.
	if err := f.env.Client.HSet(ctx, f.writes.mustKeys(t, "rw").versions, "live", "0").Err(); err != nil {
		t.Fatal(err)
	}
	short2, cancelShort2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort2()
	if _, err := f.waits.WaitFor(short2, "rw", s, 3); err == nil || !strings.Contains(err.Error(), "rw has applied process/t1/live up to 1, waiting for 3") {
		t.Errorf("with version 0 live again: %v", err)
	}
}

func (s *Store) mustKeys(t *testing.T, name string) keys {
	t.Helper()
	k, err := s.keysFor(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWaitForArguments(t *testing.T) {
	f := newWaitFixture(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	mark := f.counter.mark()
	if _, err := f.waits.WaitFor(ctx, "rw", "process//a", 1); !errors.Is(err, framework.ErrInvalidStreamID) {
		t.Errorf("invalid stream ID: %v", err)
	}
	if _, err := f.waits.WaitFor(ctx, "rw@v2", "process/t1/a", 1); err == nil {
		t.Error("a versioned projection name was accepted")
	}
	if _, err := f.waits.WaitFor(ctx, "no {name}", "process/t1/a", 1); err == nil {
		t.Error("an invalid projection name was accepted")
	}
	if n := len(f.counter.since(mark)); n != 0 {
		t.Errorf("invalid arguments cost %d round trips", n)
	}
	// Sequence 0: nothing to wait for; the live version at once.
	if name, err := f.waits.WaitFor(ctx, "rw", "process/t1/a", 0); err != nil || name != "rw" {
		t.Errorf("sequence 0: %q, %v", name, err)
	}
	// A context that has ended: no wait.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	_, err := f.waits.WaitFor(done, "rw", "process/t1/a", 1)
	want := "redischeckpoint: waiting for rw to apply process/t1/a up to 1 (its cursor was not read yet): context canceled"
	if !errors.Is(err, context.Canceled) || err.Error() != want {
		t.Errorf("ended context: %v", err)
	}
	// A corrupt cursor is an error, not a wait.
	if err := f.env.Client.HSet(ctx, f.writes.mustKeys(t, "rw").cursors, "process/t1/bad", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.waits.WaitFor(ctx, "rw", "process/t1/bad", 1); !errors.Is(err, ErrCorruptCursor) {
		t.Errorf("corrupt cursor: %v", err)
	}
}

// TestWaitForRetriesRedisErrors cuts the waiting side off Redis: checks
// fail and are retried every tick, a wait that ends meanwhile names the
// last error, and one still waiting when Redis answers again is released.
func TestWaitForRetriesRedisErrors(t *testing.T) {
	env := testenv.Redis(t)
	proxy := testenv.StartProxy(t, env.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
		DialTimeout: 100 * time.Millisecond, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	f := newWaitFixture(t, client)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s := "process/t1/cut"
	apply(t, ctx, f.p, 0, 1, s)

	proxy.Freeze()
	done := make(chan error, 1)
	go func() {
		name, err := f.waits.WaitFor(ctx, "rw", s, 2)
		if err == nil && name != "rw" {
			err = fmt.Errorf("read model %q", name)
		}
		done <- err
	}()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	_, err := f.waits.WaitFor(short, "rw", s, 2)
	var we *WaitError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &we) || we.LastError == nil || !strings.Contains(err.Error(), "the last check failed") {
		t.Errorf("wait while Redis does not answer: %v", err)
	}
	t.Logf("while cut off: %v", err)
	apply(t, ctx, f.p, 1, 2, s) // through the other client
	proxy.Thaw()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after Redis answered again: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not released after Redis answered again")
	}
}
