package kafkarunner_test

// Faults of the store under a running projection, each created for real
// against the real broker and a Redis server of the test's own: flushed,
// restarted without persistence, restored from an older snapshot (what a
// failover to a lagging replica does), evicting, refusing the fence;
// fences deleted or taken.

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// read model lives in it.
func privateRedis(t *testing.T, partitions int32, opts testenv.RedisServerOptions) (*fixture, *testenv.RedisServer) {
	t.Helper()
	srv := testenv.StartRedisServer(t, opts)
	// Short timeouts: a stopped server must fail calls quickly.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	env := &testenv.RedisEnv{Client: rdb, Addr: srv.Addr, Real: true, Kind: testenv.KindEnv}
	return newFixtureOn(t, partitions, env, rdb, "faults"), srv
}

// and retries.
func fast(c *kafkarunner.Config) {
	c.StateCheckInterval = 200 * time.Millisecond
	c.StateLostRecheck = time.Second
	c.FencedWait = 2 * time.Second
	c.RevokeTimeout = 3 * time.Second
}

// waitFor polls cond until it reports true, or fails with what it last said.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %s", what, timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// every partition.
func (f *fixture) waitCommitted(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "offsets committed to the end", func() (bool, string) {
		lag, err := f.env.Admin(t).Lag(ctxFor(t), f.name)
		if err != nil {
			return false, err.Error()
		}
		l := lag[f.name]
		if l.FetchErr != nil || l.DescribeErr != nil {
			return false, fmt.Sprint(l.FetchErr, l.DescribeErr)
		}
		return l.Lag.Total() == 0 && len(l.Lag) > 0, fmt.Sprintf("lag %d", l.Lag.Total())
	})
}

// partitionStates reads the replica's partition states as "p:state".
func partitionStates(r *kafkarunner.Runner) map[int32]string {
	out := map[int32]string{}
	for _, p := range r.Partitions() {
		out[p.Partition] = p.State
	}
	return out
}

// waitStates waits until the replica has n partitions, all in state.
func waitStates(t *testing.T, r *kafkarunner.Runner, n int, state string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d partitions %s", n, state), func() (bool, string) {
		st := partitionStates(r)
		return allIn(st, n, state), fmt.Sprint(st)
	})
}

func allIn(states map[int32]string, n int, state string) bool {
	if len(states) != n {
		return false
	}
	for _, s := range states {
		if s != state {
			return false
		}
	}
	return true
}

// empty Redis.
func TestRedisFlushedWhileRunning(t *testing.T) {
	f, _ := privateRedis(t, 2, testenv.RedisServerOptions{})
	want := f.produce(t, 20, 3, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)

	if err := f.rdb.FlushAll(ctxFor(t)).Err(); err != nil {
		t.Fatal(err)
	}
	more := map[string]int64{}
	for id := range maps.Keys(want) {
		if strings.HasSuffix(id, "3") { // a few streams, on either partition
			more[id] = 1
		}
	}
	for id := range more {
		if _, err := f.store.Append(ctxFor(t), id, framework.AnyVersion, []framework.EventData{{Type: "Counted"}}); err != nil {
			t.Fatal(err)
		}
	}
	waitStates(t, rep.r, 2, kafkarunner.PartitionStateLost)
	err := rep.r.Ready(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "state-lost") || !strings.Contains(err.Error(), "replay") {
		t.Errorf("Ready = %v, want an error naming the lost state and the replay", err)
	}
	for _, ps := range rep.r.Partitions() {
		if !strings.Contains(ps.Error, "committed offset") {
			t.Errorf("partition %d error %q does not say what the committed offset relies on", ps.Partition, ps.Error)
		}
	}
	if parked, _ := rep.r.Parked(ctxFor(t)); len(parked) != 0 {
		t.Errorf("streams parked after the flush: %+v (new events must not be taken for gaps)", parked)
	}
	if got := f.counts(t, p); len(got) != 0 {
		t.Errorf("the read model got %v on top of the flushed Redis", got)
	}
	if lag := rep.r.Lag(); len(lag) != 2 {
		t.Errorf("Lag = %+v, want both stopped partitions", lag)
	}
}

// committed offset named; none is consumed.
func TestRedisRestartedWithoutPersistence(t *testing.T) {
	f, srv := privateRedis(t, 2, testenv.RedisServerOptions{})
	want := f.produce(t, 20, 3, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	rep.stop(t)

	srv.Stop()
	srv.Start()
	f.produce(t, 4, 1, "process/t/")
	again := f.start(t, p, fast)
	waitStates(t, again.r, 2, kafkarunner.PartitionStateLost)
	for _, ps := range again.r.Partitions() {
		if !strings.Contains(ps.Error, "holds no progress for the partition") || !strings.Contains(ps.Error, "projectorctl replay") {
			t.Errorf("partition %d: %q", ps.Partition, ps.Error)
		}
	}
	if err := again.r.Ready(ctxFor(t)); err == nil {
		t.Error("a replica whose partitions lost their state is ready")
	}
	if got := f.counts(t, p); len(got) != 0 {
		t.Errorf("applied on top of the empty Redis: %v", got)
	}
}

// snapshot: a failover to a replica that missed the latest writes).
func TestRedisRestoredFromAnOlderSnapshot(t *testing.T) {
	t.Run("writes after the last commit lost: re-read and re-applied", func(t *testing.T) {
		f, srv := privateRedis(t, 2, testenv.RedisServerOptions{})
		p := f.counter(t)
		// No flush and no commit while the test runs: what Redis loses was
		// never committed.
		rep := f.start(t, p, func(c *kafkarunner.Config) { fast(c); c.FlushInterval = time.Hour })
		want := f.produce(t, 10, 2, "process/t/")
		f.waitCounts(t, p, want, time.Minute)
		if err := f.rdb.Save(ctxFor(t)).Err(); err != nil {
			t.Fatal(err)
		}
		for id, n := range f.produce(t, 10, 2, "process/t/") {
			want[id] += n
		}
		f.waitCounts(t, p, want, time.Minute)
		srv.Stop()
		srv.Start() // loads dump.rdb: the second half is gone
		// The replica notices (its serial is ahead of Redis), reads its
		// partitions again and re-applies exactly what was lost: the 20
		// events of the snapshot are skipped, the 20 after it applied
		// again.
		f.waitCounts(t, p, want, time.Minute)
		waitFor(t, 10*time.Second, "the lost half re-applied", func() (bool, string) {
			st := rep.r.Stats()
			return st.Applied == 60 && st.Skipped == 20, fmt.Sprintf("%+v", st)
		})
		time.Sleep(time.Second)
		f.waitCounts(t, p, want, time.Second)
		if st := partitionStates(rep.r); !allIn(st, 2, kafkarunner.PartitionRunning) {
			t.Errorf("partition states %v, want running again", st)
		}
	})
	t.Run("committed writes lost: the partitions stop", func(t *testing.T) {
		f, srv := privateRedis(t, 2, testenv.RedisServerOptions{})
		p := f.counter(t)
		rep := f.start(t, p, fast)
		want := f.produce(t, 10, 2, "process/t/")
		f.waitCounts(t, p, want, time.Minute)
		f.waitCommitted(t)
		if err := f.rdb.Save(ctxFor(t)).Err(); err != nil {
			t.Fatal(err)
		}
		for id, n := range f.produce(t, 10, 2, "process/t/") {
			want[id] += n
		}
		f.waitCounts(t, p, want, time.Minute)
		f.waitCommitted(t)
		srv.Stop()
		srv.Start()
		waitStates(t, rep.r, 2, kafkarunner.PartitionStateLost)
		for _, ps := range rep.r.Partitions() {
			if !strings.Contains(ps.Error, "covers the partition only up to offset") {
				t.Errorf("partition %d: %q", ps.Partition, ps.Error)
			}
		}
	})
}

// without AOF is a warning, in the log and in the replica's report.
func TestServerChecks(t *testing.T) {
	t.Run("eviction refused", func(t *testing.T) {
		f, _ := privateRedis(t, 1, testenv.RedisServerOptions{Args: []string{"--maxmemory-policy", "allkeys-lru"}})
		r, err := kafkarunner.New(kafkarunner.Config{Seeds: f.env.Seeds, Topic: f.store.Config().Topic, Projection: f.counter(t), Checkpoints: f.rstore})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(ctxFor(t))
		if !errors.Is(err, redischeckpoint.ErrEvictingServer) || !strings.Contains(err.Error(), "allkeys-lru") {
			t.Errorf("Run = %v, want ErrEvictingServer naming the policy", err)
		}
	})
	t.Run("no persistence warned", func(t *testing.T) {
		f, _ := privateRedis(t, 1, testenv.RedisServerOptions{})
		rep := f.start(t, f.counter(t), nil)
		waitFor(t, 30*time.Second, "running", func() (bool, string) { return len(rep.r.Assigned()) == 1, "" })
		if w := rep.r.Warnings(); len(w) != 1 || !strings.Contains(w[0], "without AOF") {
			t.Errorf("Warnings = %q, want the missing AOF", w)
		}
	})
	t.Run("AOF and noeviction: nothing to say", func(t *testing.T) {
		f, _ := privateRedis(t, 1, testenv.RedisServerOptions{AppendOnly: true})
		rep := f.start(t, f.counter(t), nil)
		waitFor(t, 30*time.Second, "running", func() (bool, string) { return len(rep.r.Assigned()) == 1, "" })
		if w := rep.r.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	})
}

// granted, the workers start and every event is applied once.
func TestFenceRefusedAtAssignment(t *testing.T) {
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{})
	admin := srv.Client(t)
	if err := admin.Do(ctxFor(t), "ACL", "SETUSER", "replica", "on", ">secret-pw", "~*", "&*", "+@all", "-evalsha", "-eval").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "replica", Password: "secret-pw"})
	t.Cleanup(func() { _ = rdb.Close() })
	f := newFixtureOn(t, 2, &testenv.RedisEnv{Client: rdb, Addr: srv.Addr, Real: true, Kind: testenv.KindEnv}, rdb, "faults")
	want := f.produce(t, 20, 3, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	waitFor(t, 30*time.Second, "both partitions failing on their fence", func() (bool, string) {
		st := rep.r.Partitions()
		ok := len(st) == 2
		for _, ps := range st {
			ok = ok && ps.State != kafkarunner.PartitionRunning && strings.Contains(ps.Error, "fence") && strings.Contains(ps.Error, "NOPERM")
		}
		return ok, fmt.Sprint(st)
	})
	err := rep.r.Ready(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "partition 0") || !strings.Contains(err.Error(), "partition 1") {
		t.Errorf("Ready = %v, want both partitions named", err)
	}
	if strings.Contains(fmt.Sprint(err), "secret-pw") {
		t.Errorf("readiness shows the password: %v", err)
	}
	if lag := rep.r.Lag(); len(lag) != 2 {
		t.Errorf("Lag = %+v, want both partitions", lag)
	}
	if got := f.counts(t, p); len(got) != 0 {
		t.Fatalf("applied without a fence: %v", got)
	}
	if err := admin.Do(ctxFor(t), "ACL", "SETUSER", "replica", "+evalsha", "+eval").Err(); err != nil {
		t.Fatal(err)
	}
	f.waitCounts(t, p, want, time.Minute)
	waitFor(t, 30*time.Second, "ready", func() (bool, string) {
		err := rep.r.Ready(ctxFor(t))
		return err == nil, fmt.Sprint(err)
	})
}

// covered, and carries on: nothing lost, nothing twice.
func TestFencesDeletedWhileRunning(t *testing.T) {
	f, _ := privateRedis(t, 2, testenv.RedisServerOptions{})
	want := f.produce(t, 20, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	if err := f.rdb.Del(ctxFor(t), "faults:{"+f.name+"}:fences").Err(); err != nil {
		t.Fatal(err)
	}
	for id, n := range f.produce(t, 20, 2, "process/t/") {
		want[id] += n
	}
	f.waitCounts(t, p, want, time.Minute)
	if st := partitionStates(rep.r); !allIn(st, 2, kafkarunner.PartitionRunning) {
		t.Errorf("partition states %v", st)
	}
}

// and after FencedWait takes the fence back and carries on.
func TestFenceTakenOutOfBand(t *testing.T) {
	f := newFixture(t, 1)
	want := f.produce(t, 10, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)

	if _, err := f.rstore.AcquireFence(ctxFor(t), f.name, 0); err != nil {
		t.Fatal(err)
	}
	for id, n := range f.produce(t, 10, 1, "process/t/") {
		want[id] += n
	}
	waitFor(t, 10*time.Second, "partition fenced", func() (bool, string) {
		st := partitionStates(rep.r)
		return st[0] == kafkarunner.PartitionFenced, fmt.Sprint(st)
	})
	if got := f.counts(t, p); got["process/t/00001"] != 2 {
		t.Errorf("the fenced replica changed the read model: %v", got)
	}
	if err := rep.r.Ready(ctxFor(t)); err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Errorf("Ready = %v, want the fenced partition", err)
	}
	f.waitCounts(t, p, want, 30*time.Second)
}

// TestStateOfAnOlderVersionIsAdopted: cursors and committed offsets of a
// version that kept no progress and no write serials (their keys removed
// here) are not taken for lost state: the runner adopts the committed
// offsets and carries on, exactly.
func TestStateOfAnOlderVersionIsAdopted(t *testing.T) {
	f := newFixture(t, 2)
	want := f.produce(t, 20, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	f.waitCommitted(t)
	rep.stop(t)
	base := f.ns + ":{" + f.name + "}:"
	if err := f.rdb.Del(ctxFor(t), base+"progress", base+"serials").Err(); err != nil {
		t.Fatal(err)
	}
	for id, n := range f.produce(t, 20, 1, "process/t/") {
		want[id] += n
	}
	again := f.start(t, p, fast)
	f.waitCounts(t, p, want, time.Minute)
	if st := partitionStates(again.r); !allIn(st, 2, kafkarunner.PartitionRunning) {
		t.Errorf("partition states %v, want running", st)
	}
	if st := again.r.Stats(); st.Applied != 20 || st.Skipped != 0 {
		t.Errorf("stats %+v, want the 20 new events applied and nothing redelivered", st)
	}
}
