package redischeckpoint_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// BenchmarkShardedApply measures what sharding a read model by partition
// gives on the 3-master Redis Cluster of scripts/ha.sh (issue 20, see
// docs/performance.md, "Sharding a read model by partition"). In the same
// run, alternating, it applies the same fenced batches of events, one
// HINCRBY each (as BenchmarkApplyBatch), of 12 partitions from one
// goroutine per partition:
//
//   - unsharded: one AtomicProjection, so every key in one hash slot, one
//     master; every partition fenced on it;
//   - sharded: one AtomicProjection per partition, whose name (its hash
//     tag) is the partition's shard tag, chosen by asking the cluster
//     which master owns its slot so that the partitions spread evenly over
//     the masters (4 each). This is the key layout of the sharding design
//     without changing the production layout: every key of an apply
//     script (fences, serials, cursors, heads, read model) in the
//     partition's slot;
//   - sharded-1m, the control: the sharded layout with every partition's
//     tag on unsharded's master, to tell what the layout costs from what
//     three masters sharing the machine's cores cost.
//
// Per master it takes the deltas of INFO cpu, commandstats and errorstats
// over each layout's applies, and reports events/s of each, the ratio of
// sharded to unsharded,
// Redis CPU and commands per event (summed over the masters), the spread
// of CPU and commands over the masters for sharded (max/mean - 1 and
// min/mean - 1, %), and errors (CROSSSLOT and all). It checks that every
// stream's count and cursor equal the events applied (exactly once).
//
//	PROJECTOR_HA_DIR=/tmp/shard-ha PROJECTOR_HA_PORT_BASE=13000 scripts/ha.sh up
//	eval "$(PROJECTOR_HA_DIR=/tmp/shard-ha scripts/ha.sh env)"
//	go test -run '^$' -bench ShardedApply -benchtime 100x -count 3 ./redischeckpoint
func BenchmarkShardedApply(b *testing.B) {
	var seeds []string
	for _, node := range strings.Split(os.Getenv("PROJECTOR_HA_REDIS_CLUSTER"), ",") {
		if _, addr, ok := strings.Cut(strings.TrimSpace(node), "="); ok { // "1=127.0.0.1:21400"
			seeds = append(seeds, addr)
		}
	}
	if len(seeds) == 0 {
		b.Skip(`needs the Redis Cluster of scripts/ha.sh (PROJECTOR_HA_REDIS_CLUSTER unset): scripts/ha.sh up; eval "$(scripts/ha.sh env)"`)
	}
	const partitions, batch, streams = 12, 1000, 2000 // streams per partition
	ctx := b.Context()
	// Redis 7.0 answers the CLIENT SETINFO of every new connection and
	// the first CLIENT MAINT_NOTIFICATIONS with ERR: neither is sent, so
	// that errorstats counts the applies' errors only.
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds, PoolSize: 2 * partitions, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer client.Close()
	masters := clusterMasters(b, ctx, client)
	ns := "shardbench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	defer func() { deleteNamespace(b, masters, ns) }()
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: ns})
	if err != nil {
		b.Fatal(err)
	}
	count := func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	}
	// The layouts: per partition, the projection and its fenced context.
	type layout struct {
		name  string
		ps    []*redischeckpoint.AtomicProjection
		ctxs  []context.Context
		took  time.Duration
		cpu   time.Duration // of this process (the client side)
		delta []masterStats // per master, summed over the run
	}
	unsharded := &layout{name: "unsharded"}
	sharded := &layout{name: "sharded"}
	oneMaster := &layout{name: "sharded-1m"} // the control: sharded tags, all on unsharded's master
	layouts := []*layout{unsharded, sharded, oneMaster}
	one, err := s.NewAtomicProjection("unsharded", count)
	if err != nil {
		b.Fatal(err)
	}
	home := masterOf(b, ctx, client, masters, one.Key("counts"))
	spreadTags := shardTags(b, ctx, client, masters, ns, "sharded", partitions, func(p int) int { return p % len(masters) })
	homeTags := shardTags(b, ctx, client, masters, ns, "onemaster", partitions, func(int) int { return home })
	for i := range partitions {
		for _, l := range layouts {
			p := one
			switch l {
			case sharded:
				p, err = s.NewAtomicProjection(spreadTags[i], count)
			case oneMaster:
				p, err = s.NewAtomicProjection(homeTags[i], count)
			}
			if err != nil {
				b.Fatal(err)
			}
			f, err := s.AcquireFence(ctx, p.Name(), int32(i))
			if err != nil {
				b.Fatal(err)
			}
			l.ps = append(l.ps, p)
			l.ctxs = append(l.ctxs, controlplane.WithFence(ctx, f))
		}
	}
	for _, l := range layouts {
		l.delta = make([]masterStats, len(masters))
		for m := range l.delta {
			l.delta[m] = newMasterStats()
		}
	}
	b.Logf("masters %v; unsharded on master %d; sharded tags by master: %v; sharded-1m tags by master: %v", masterAddrs(masters),
		home+1, tagsByMaster(b, ctx, client, masters, sharded.ps), tagsByMaster(b, ctx, client, masters, oneMaster.ps))

	ids := make([][]string, partitions)
	for p := range ids {
		ids[p] = make([]string, streams)
		for i := range ids[p] {
			ids[p][i] = fmt.Sprintf("process/p%02d/%05d", p, i)
		}
	}
	seqs := make([][]uint64, partitions)
	events := make([][]framework.Event, partitions)
	next := make([]int, partitions)
	offsets := make([]int64, partitions)
	fill := func() {
		for p := range partitions {
			if seqs[p] == nil {
				seqs[p] = make([]uint64, streams)
				events[p] = make([]framework.Event, batch)
			}
			for i := range events[p] {
				st := next[p] % streams // a batch holds batch distinct streams
				next[p]++
				seqs[p][st]++
				offsets[p]++
				events[p][i] = framework.Event{StreamID: ids[p][st], Sequence: seqs[p][st], EventID: ids[p][st] + "#" + strconv.FormatUint(seqs[p][st], 10),
					Type: "Counted", Position: &framework.Position{Partition: int32(p), Offset: offsets[p]}}
			}
		}
	}
	apply := func(l *layout) {
		errs := make([]error, partitions)
		var wg sync.WaitGroup
		before := snapshot(b, ctx, masters)
		start, cpu0 := time.Now(), processCPU()
		for p := range partitions {
			wg.Go(func() {
				n, err := l.ps[p].ApplyBatch(l.ctxs[p], events[p])
				if err == nil && n != batch {
					err = fmt.Errorf("applied %d of %d", n, batch)
				}
				errs[p] = err
			})
		}
		wg.Wait()
		l.took += time.Since(start)
		l.cpu += processCPU() - cpu0
		after := snapshot(b, ctx, masters)
		for m := range masters {
			l.delta[m].add(after[m], before[m])
		}
		for p, err := range errs {
			if err != nil {
				b.Fatalf("%s: partition %d: ApplyBatch: %v", l.name, p, err)
			}
		}
	}
	// A first batch of each loads the script on every master (NOSCRIPT
	// errors, EVAL) outside the measurement.
	fill()
	for _, l := range layouts {
		apply(l)
	}
	for _, l := range layouts {
		l.took, l.cpu = 0, 0
		for m := range l.delta {
			l.delta[m] = newMasterStats()
		}
	}
	iter := 0
	for b.Loop() {
		fill()
		// Rotate which layout goes first.
		for k := range layouts {
			apply(layouts[(iter+k)%len(layouts)])
		}
		iter++
	}
	b.StopTimer()

	// Exactly once: every stream's count and cursor are its events.
	for _, l := range layouts {
		for p := range partitions {
			got, err := client.HGetAll(ctx, l.ps[p].Key("counts")).Result()
			if err != nil {
				b.Fatal(err)
			}
			cursors, err := s.Cursors(ctx, l.ps[p].Name(), ids[p])
			if err != nil {
				b.Fatal(err)
			}
			for i, id := range ids[p] {
				if want := strconv.FormatUint(seqs[p][i], 10); got[id] != want || cursors[id] != seqs[p][i] {
					b.Fatalf("%s: stream %s: count %q, cursor %d; want %s", l.name, id, got[id], cursors[id], want)
				}
			}
			if l == unsharded && p > 0 {
				continue
			}
			if sk := l.ps[p].Skipped(); sk != 0 {
				b.Fatalf("%s: %d events skipped as duplicates", l.name, sk)
			}
		}
	}

	n := float64(partitions * batch * iter)
	var crossslot, errorsAll int64
	report := map[string]float64{}
	for _, l := range layouts {
		var cpu time.Duration
		var cmds int64
		cpus, cmdsPer := make([]float64, len(masters)), make([]float64, len(masters))
		var line []string
		for m, d := range l.delta {
			cpu += d.cpu
			cmds += d.dataCalls()
			crossslot += d.errors["CROSSSLOT"]
			for _, c := range d.errors {
				errorsAll += c
			}
			cpus[m], cmdsPer[m] = float64(d.cpu.Microseconds()), float64(d.dataCalls())
			line = append(line, fmt.Sprintf("master %d: CPU %.0f ms (%.2f µs/event), commands %d (evalsha %d, hincrby %d), evalsha %.0f ms, commands in scripts %.0f ms, errors %v",
				m+1, float64(d.cpu.Microseconds())/1e3, float64(d.cpu.Nanoseconds())/n/1e3, d.dataCalls(),
				d.calls["evalsha"]+d.calls["eval"], d.calls["hincrby"], float64(d.usec["evalsha"]+d.usec["eval"])/1e3,
				float64(d.scriptCommandUsec())/1e3, d.errors))
		}
		b.Logf("%s, %.0f events in %v: %s", l.name, n, l.took.Round(time.Millisecond), strings.Join(line, "; "))
		report[l.name+"-events/s"] = n / l.took.Seconds()
		report[l.name+"-redis-µs/event"] = float64(cpu.Nanoseconds()) / n / 1e3
		report[l.name+"-cmds/event"] = float64(cmds) / n
		report[l.name+"-client-µs/event"] = float64(l.cpu.Nanoseconds()) / n / 1e3
		switch l {
		case sharded:
			report["sharded-cpu-max-%"], report["sharded-cpu-min-%"] = spread(cpus)
			report["sharded-cmds-max-%"], report["sharded-cmds-min-%"] = spread(cmdsPer)
		case unsharded:
			// Where the single master's time goes: the scripts (their
			// commands included) against the CPU of the whole server.
			var script, inner int64
			for _, d := range l.delta {
				script += d.usec["evalsha"] + d.usec["eval"]
				inner += d.scriptCommandUsec()
			}
			report["unsharded-script-µs/event"] = float64(script) / n
			report["unsharded-script-cmds-µs/event"] = float64(inner) / n
		}
	}
	report["sharded/unsharded-speed"] = report["sharded-events/s"] / report["unsharded-events/s"]
	report["sharded/unsharded-redis-cpu"] = report["sharded-redis-µs/event"] / report["unsharded-redis-µs/event"]
	report["sharded/sharded-1m-redis-cpu"] = report["sharded-redis-µs/event"] / report["sharded-1m-redis-µs/event"]
	report["crossslot-errors"] = float64(crossslot)
	report["errors"] = float64(errorsAll)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range report {
			if !yield(k) {
				return
			}
		}
	}) {
		b.ReportMetric(report[k], k)
	}
	if crossslot > 0 || errorsAll > 0 {
		b.Errorf("%d CROSSSLOT errors, %d errors in all during the applies", crossslot, errorsAll)
	}
}

// clusterMaster is one master of the cluster: its address, the slot
// ranges it owns and a connection to it alone (for INFO).
type clusterMaster struct {
	addr   string
	slots  [][2]int
	client *redis.Client
}

// clusterMasters returns the cluster's masters, ordered by address, once
// every slot is covered.
func clusterMasters(b *testing.B, ctx context.Context, client *redis.ClusterClient) []*clusterMaster {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		shards, err := client.ClusterShards(ctx).Result()
		covered := 0
		byAddr := map[string]*clusterMaster{}
		for _, sh := range shards {
			addr := ""
			for _, n := range sh.Nodes {
				if n.Role == "master" && n.Health == "online" {
					addr = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
			if addr == "" || len(sh.Slots) == 0 {
				continue
			}
			m := &clusterMaster{addr: addr}
			byAddr[addr] = m
			for _, r := range sh.Slots {
				m.slots = append(m.slots, [2]int{int(r.Start), int(r.End)})
				covered += int(r.End-r.Start) + 1
			}
		}
		if err == nil && covered == 16384 {
			var masters []*clusterMaster
			for _, m := range byAddr {
				m.client = redis.NewClient(&redis.Options{Addr: m.addr, DisableIdentity: true,
					MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
				b.Cleanup(func() { _ = m.client.Close() })
				masters = append(masters, m)
			}
			slices.SortFunc(masters, func(x, y *clusterMaster) int { return strings.Compare(x.addr, y.addr) })
			return masters
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster slots not covered (%d of 16384): %v", covered, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func masterAddrs(masters []*clusterMaster) []string {
	var out []string
	for _, m := range masters {
		out = append(out, m.addr)
	}
	return out
}

// masterOf returns the index of the master that owns key's slot, asking
// the cluster (CLUSTER KEYSLOT).
func masterOf(b *testing.B, ctx context.Context, client *redis.ClusterClient, masters []*clusterMaster, key string) int {
	b.Helper()
	slot, err := client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		b.Fatal(err)
	}
	for i, m := range masters {
		for _, r := range m.slots {
			if int(slot) >= r[0] && int(slot) <= r[1] {
				return i
			}
		}
	}
	b.Fatalf("no master owns slot %d of %s", slot, key)
	return -1
}

// shardTags returns one projection name per partition, base.pNN or
// base.pNN.k, whose hash tag lands on master onto(NN) (p % len(masters)
// spreads the partitions evenly: 4 each for 12 on 3). The cluster is asked
// for the slot of the name's cursors key, so the choice follows the key
// layout, not a copy of CRC16.
func shardTags(b *testing.B, ctx context.Context, client *redis.ClusterClient, masters []*clusterMaster, ns, base string, partitions int, onto func(p int) int) []string {
	b.Helper()
	tags := make([]string, partitions)
	for p := range partitions {
		want := onto(p)
		for k := 0; ; k++ {
			tag := fmt.Sprintf("%s.p%02d", base, p)
			if k > 0 {
				tag += "." + strconv.Itoa(k)
			}
			if masterOf(b, ctx, client, masters, ns+":{"+tag+"}:cursors") == want {
				tags[p] = tag
				break
			}
			if k == 1000 {
				b.Fatalf("no tag for partition %d on master %s", p, masters[want].addr)
			}
		}
	}
	return tags
}

// tagsByMaster lists, per master, the projections whose read model it
// holds (checked through the read-model key, not the tag).
func tagsByMaster(b *testing.B, ctx context.Context, client *redis.ClusterClient, masters []*clusterMaster, ps []*redischeckpoint.AtomicProjection) [][]string {
	b.Helper()
	out := make([][]string, len(masters))
	for _, p := range ps {
		m := masterOf(b, ctx, client, masters, p.Key("counts"))
		out[m] = append(out[m], p.Name())
	}
	return out
}

// masterStats are the counters of one master's INFO cpu, commandstats and
// errorstats, or deltas of them.
type masterStats struct {
	cpu    time.Duration
	calls  map[string]int64 // per command, lower case
	usec   map[string]int64
	errors map[string]int64 // per error prefix (CROSSSLOT, NOSCRIPT, ...)
}

func newMasterStats() masterStats {
	return masterStats{calls: map[string]int64{}, usec: map[string]int64{}, errors: map[string]int64{}}
}

// add adds after - before to s.
func (s *masterStats) add(after, before masterStats) {
	s.cpu += after.cpu - before.cpu
	for k, v := range after.calls {
		s.calls[k] += v - before.calls[k]
	}
	for k, v := range after.usec {
		s.usec[k] += v - before.usec[k]
	}
	for k, v := range after.errors {
		if d := v - before.errors[k]; d != 0 {
			s.errors[k] += d
		}
	}
}

// notData are the commands the benchmark's own bookkeeping and the
// cluster client send: not counted as the projection's commands.
var notData = map[string]bool{"info": true, "cluster": true, "ping": true, "client": true, "hello": true, "command": true,
	"readonly": true, "config": true, "scan": true, "unlink": true, "hgetall": true}

// dataCalls counts the projection's commands: the scripts and the
// commands they run.
func (s masterStats) dataCalls() int64 {
	var n int64
	for k, v := range s.calls {
		if !notData[k] {
			n += v
		}
	}
	return n
}

// scriptCommandUsec is the time of the commands the scripts run (counted
// by commandstats beside the script's own time, which includes them).
func (s masterStats) scriptCommandUsec() int64 {
	var n int64
	for k, v := range s.usec {
		if !notData[k] && k != "evalsha" && k != "eval" {
			n += v
		}
	}
	return n
}

// snapshot reads every master's counters.
func snapshot(b *testing.B, ctx context.Context, masters []*clusterMaster) []masterStats {
	b.Helper()
	out := make([]masterStats, len(masters))
	for i, m := range masters {
		info, err := m.client.Info(ctx, "cpu", "commandstats", "errorstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		st := newMasterStats()
		var cpu float64
		for line := range strings.Lines(info) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch {
			case k == "used_cpu_user" || k == "used_cpu_sys":
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("INFO cpu %s: %v", line, err)
				}
				cpu += f
			case strings.HasPrefix(k, "cmdstat_"):
				cmd := strings.TrimPrefix(k, "cmdstat_") // "cluster|info" for subcommands
				cmd, _, _ = strings.Cut(cmd, "|")
				st.calls[cmd] += infoField(v, "calls")
				st.usec[cmd] += infoField(v, "usec")
			case strings.HasPrefix(k, "errorstat_"):
				st.errors[strings.TrimPrefix(k, "errorstat_")] += infoField(v, "count")
			}
		}
		st.cpu = time.Duration(cpu * float64(time.Second))
		out[i] = st
	}
	return out
}

// infoField returns field of "calls=1,usec=2,...".
func infoField(v, field string) int64 {
	for kv := range strings.SplitSeq(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == field {
			n, _ := strconv.ParseInt(val, 10, 64)
			return n
		}
	}
	return 0
}

// processCPU is the CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spread returns max/mean - 1 and min/mean - 1 of xs, in percent.
func spread(xs []float64) (hi, lo float64) {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	if mean == 0 {
		return math.NaN(), math.NaN()
	}
	return (slices.Max(xs)/mean - 1) * 100, (slices.Min(xs)/mean - 1) * 100
}

// deleteNamespace removes the benchmark's keys, one UNLINK per key (they
// are in many slots).
func deleteNamespace(b *testing.B, masters []*clusterMaster, ns string) {
	ctx := context.Background()
	for _, m := range masters {
		iter := m.client.Scan(ctx, 0, ns+":*", 1000).Iterator()
		pipe := m.client.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			b.Log(err)
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Log(err)
			}
		}
	}
}
