package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/tcpproxy"
)

// Fault kinds. Replica faults act on worker processes, network faults on
// the proxies between one replica and the servers, server faults on the
// servers (through the topology's control script), admin faults run
// projectorctl, and a poison fault appends a poison record.
const (
	FaultKill      = "kill"       // SIGKILL a replica, start a new one
	FaultZombie    = "zombie"     // SIGSTOP a replica past its session, then SIGCONT
	FaultScaleUp   = "scale-up"   // start one more replica
	FaultScaleDown = "scale-down" // SIGTERM a replica
	// FaultPartition holds every byte between a replica and Kafka (its
	// own proxies) past its session, while it keeps running and reaching
	// Redis, then lets the traffic through.
	FaultPartition = "partition"
	// FaultRedisPartition holds every byte between a replica and Redis
	// (servers and Sentinels) for a few seconds.
	FaultRedisPartition = "redis-partition"
	// FaultLatency delays every byte between a replica and all servers.
	FaultLatency = "latency"
	// FaultReset resets every connection of a replica and refuses new
	// ones for a moment.
	FaultReset = "reset"
	// FaultBrokerKill SIGKILLs the broker leading a partition of the
	// topic and starts it again after Stop.
	FaultBrokerKill = "broker-kill"
	// FaultRedisRestart SIGKILLs the Redis server holding the
	// projection's keys (AOF on) and starts it again after Stop.
	FaultRedisRestart = "redis-restart"
	// FaultFailover asks the Sentinels for a failover of the master.
	FaultFailover = "failover"
	// FaultRebuild starts a blue/green rebuild (projectorctl rebuild).
	FaultRebuild = "rebuild"
	// FaultReplay replays the live version in place (projectorctl replay).
	FaultReplay = "replay"
	// FaultPoison appends a poison record of one kind to a new stream.
	FaultPoison = "poison"
	// FaultWriterKill SIGKILLs a writer process (Config.Writers) and
	// starts a new one: its append in flight is left half-way.
	FaultWriterKill = "writer-kill"
	// FaultWriterZombie SIGSTOPs a writer process past its append lease
	// (+ 2-5 s), so other writers fence its appends, then SIGCONTs it.
	FaultWriterZombie = "writer-zombie"
)

// FaultKinds are every kind, in report order.
var FaultKinds = []string{FaultKill, FaultZombie, FaultScaleUp, FaultScaleDown, FaultPartition,
	FaultRedisPartition, FaultLatency, FaultReset, FaultBrokerKill, FaultRedisRestart, FaultFailover,
	FaultRebuild, FaultReplay, FaultPoison, FaultWriterKill, FaultWriterZombie}

// weights make the heavy faults rarer: a rebuild or a replay reads the
// whole topic again.
var weights = map[string]int{FaultKill: 3, FaultZombie: 2, FaultScaleUp: 2, FaultScaleDown: 2, FaultPartition: 2,
	FaultRedisPartition: 2, FaultLatency: 2, FaultReset: 2, FaultBrokerKill: 2, FaultRedisRestart: 2, FaultFailover: 2,
	FaultRebuild: 1, FaultReplay: 1, FaultPoison: 2, FaultWriterKill: 2, FaultWriterZombie: 2}

// Kinds returns the fault kinds a run can inject: server faults only with
// a control script, a failover only with Sentinels, admin faults only with
// projectorctl, writer faults only with writer processes.
func Kinds(t Topology, admin, writers bool) []string {
	var out []string
	for _, k := range FaultKinds {
		switch k {
		case FaultBrokerKill, FaultRedisRestart:
			if !t.ServerFaults() {
				continue
			}
		case FaultFailover:
			if !t.ServerFaults() || t.Redis.MasterName == "" {
				continue
			}
		case FaultRebuild, FaultReplay:
			if !admin {
				continue
			}
		case FaultWriterKill, FaultWriterZombie:
			if !writers {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// Fault is one planned fault: At after the start, Kind, Pick (which
// replica, partition or poison kind, modulo the choices then), and for a
// fault that lasts, Stop; Latency for a latency fault.
type Fault struct {
	At      time.Duration `json:"at"`
	Kind    string        `json:"kind"`
	Pick    uint32        `json:"pick"`
	Stop    time.Duration `json:"stop,omitempty"`
	Latency time.Duration `json:"latency,omitempty"`
}

func (f Fault) String() string {
	s := fmt.Sprintf("t+%-7s %-15s pick=%d", f.At.Round(100*time.Millisecond), f.Kind, f.Pick)
	if f.Stop > 0 {
		s += " stop=" + f.Stop.Round(100*time.Millisecond).String()
	}
	if f.Latency > 0 {
		s += " latency=" + f.Latency.String()
	}
	return s
}

// Schedule plans the faults of a run from seed alone: the same seed,
// duration, session and kinds give the same schedule. Faults do not
// overlap (admin faults run in the background and may overlap later
// ones). Nothing is planned in the last seconds of the run. A writer
// zombie outlasts DefaultWriterLease; see ScheduleWithLease.
func Schedule(seed uint64, duration, session time.Duration, kinds []string) []Fault {
	return ScheduleWithLease(seed, duration, session, DefaultWriterLease, kinds)
}

// ScheduleWithLease is Schedule for writers whose append lease is lease:
// a writer zombie is stopped for lease + 2.5-5 s.
func ScheduleWithLease(seed uint64, duration, session, lease time.Duration, kinds []string) []Fault {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var bag []string
	for _, k := range kinds {
		for range max(weights[k], 1) {
			bag = append(bag, k)
		}
	}
	if len(bag) == 0 {
		return nil
	}
	var out []Fault
	at := 2 * time.Second
	end := duration - 2*time.Second
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	for {
		at += between(2*time.Second, 7*time.Second)
		if at >= end {
			return out
		}
		f := Fault{At: at, Kind: bag[rng.IntN(len(bag))], Pick: rng.Uint32()}
		switch f.Kind {
		case FaultZombie, FaultPartition:
			// Longer than the session, so the group moves its partitions.
			f.Stop = session + between(2*time.Second, 4*time.Second)
		case FaultWriterZombie:
			// Longer than the lease + 2 s, so another writer fences it.
			f.Stop = lease + between(2500*time.Millisecond, 5*time.Second)
		case FaultRedisPartition:
			f.Stop = between(2*time.Second, 8*time.Second)
		case FaultLatency:
			f.Stop = between(4*time.Second, 10*time.Second)
			f.Latency = time.Duration(20+rng.IntN(230)) * time.Millisecond
		case FaultReset:
			f.Stop = between(500*time.Millisecond, 3*time.Second)
		case FaultBrokerKill:
			f.Stop = between(2*time.Second, 10*time.Second)
		case FaultRedisRestart:
			f.Stop = between(200*time.Millisecond, 2*time.Second)
		}
		at += f.Stop
		out = append(out, f)
	}
}

// Event is one fault as executed.
type Event struct {
	Fault
	Time    time.Time `json:"time"`
	Target  string    `json:"target,omitempty"`  // the replica, server or command it hit
	Skipped string    `json:"skipped,omitempty"` // why the fault was not injected
	Ended   time.Time `json:"ended"`
	// CatchUpSeconds is the time from the end of the fault until the group
	// had committed every record appended before that end (-1: not within
	// the bound, or not measured).
	CatchUpSeconds float64 `json:"catch_up_seconds"`
}

// replica is one worker process, whose connections to every server go
// through proxies of its own.
type replica struct {
	id      string
	cmd     *exec.Cmd
	log     *os.File
	kafka   []*tcpproxy.Proxy
	redis   []*tcpproxy.Proxy
	addFile string // its HTTP address (/readyz)
}

func (r *replica) proxies() []*tcpproxy.Proxy {
	return append(append([]*tcpproxy.Proxy(nil), r.kafka...), r.redis...)
}

// done releases what the replica held once its process exited.
func (r *replica) done() {
	_ = r.log.Close()
	for _, p := range r.proxies() {
		p.Close()
	}
}

// fleet starts and signals worker processes.
type fleet struct {
	binary string
	topo   Topology
	args   []string // worker flags, without --replica-id, --dial and --addr-file
	// command, when set, makes a replica's command instead (the billing
	// worker); its Stdout and Stderr are set by start.
	command func(r *replica, dial DialMap) (*exec.Cmd, error)
	dir     string // worker logs
	min     int
	max     int

	mu   sync.Mutex
	n    int
	live []*replica
	all  []*replica
}

func (f *fleet) start() (*replica, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("r%02d", f.n)
	logf, err := os.Create(filepath.Join(f.dir, id+".log"))
	if err != nil {
		return nil, err
	}
	r := &replica{id: id, log: logf, addFile: filepath.Join(f.dir, id+".addr")}
	dial := DialMap{}
	kafka, rds := f.topo.proxied()
	for i, addr := range append(append([]string(nil), kafka...), rds...) {
		px, err := tcpproxy.New(addr)
		if err != nil {
			r.done()
			return nil, err
		}
		dial[addr] = px.Addr
		if i < len(kafka) {
			r.kafka = append(r.kafka, px)
		} else {
			r.redis = append(r.redis, px)
		}
	}
	if f.command != nil {
		if r.cmd, err = f.command(r, dial); err != nil {
			r.done()
			return nil, err
		}
	} else {
		r.cmd = exec.Command(f.binary, append(append([]string{"worker"}, f.args...),
			"--replica-id", id, "--dial", dial.String(), "--addr-file", r.addFile)...)
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		r.done()
		return nil, fmt.Errorf("start worker %s: %w", id, err)
	}
	f.live = append(f.live, r)
	f.all = append(f.all, r)
	return r, nil
}

// take removes the replica pick selects from the live set.
func (f *fleet) pick(p uint32) *replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.live) == 0 {
		return nil
	}
	return f.live[int(p)%len(f.live)]
}

func (f *fleet) remove(r *replica) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.live {
		if x == r {
			f.live = append(f.live[:i], f.live[i+1:]...)
			return
		}
	}
}

func (f *fleet) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

// stopAll SIGTERMs every live replica, waits up to grace, then SIGKILLs.
// It returns the replicas that exited with an error after SIGTERM.
func (f *fleet) stopAll(grace time.Duration) []string {
	f.mu.Lock()
	live := append([]*replica(nil), f.live...)
	f.live = nil
	f.mu.Unlock()
	var bad []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			for _, p := range r.proxies() {
				p.Thaw()
				p.SetLatency(0)
				p.Refuse(false)
			}
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- r.cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", r.id, err))
					mu.Unlock()
				}
			case <-time.After(grace):
				_ = r.cmd.Process.Kill()
				<-done
				mu.Lock()
				bad = append(bad, r.id+": did not stop within "+grace.String()+" of SIGTERM")
				mu.Unlock()
			}
			r.done()
		}()
	}
	wg.Wait()
	return bad
}

// terminate SIGTERMs r and waits for it (SIGKILL after grace).
func terminate(r *replica, grace time.Duration) error {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		r.done()
		return err
	case <-time.After(grace):
		_ = r.cmd.Process.Kill()
		<-done
		r.done()
		return fmt.Errorf("did not stop within %v of SIGTERM", grace)
	}
}

// hold applies begin to the replica ft picks, waits ft.Stop and applies
// end: a zombie (SIGSTOP, SIGCONT) or a partition (freeze, thaw its proxy).
func (f *fleet) hold(ctx context.Context, ft Fault, ev *Event, begin, end func(*replica)) {
	r := f.pick(ft.Pick)
	if r == nil {
		ev.Skipped = "no replica"
		return
	}
	ev.Target = r.id
	begin(r)
	select {
	case <-time.After(ft.Stop):
	case <-ctx.Done():
	}
	end(r)
}

// nemesis injects faults into a run.
type nemesis struct {
	fleet      *fleet
	topo       Topology
	topic      string
	partitions int32
	projection string
	// ctl runs projectorctl with the run's connection flags before args;
	// nil: no admin faults.
	ctl    func(ctx context.Context, args ...string) error
	poison *poisoner
	// writers are the writer processes (nil: none, no writer faults).
	writers *writerFleet
	logf    func(string, ...any)
	// prefixCheck checks the read model of version name as a prefix
	// (before a replay resets it); nil: none (billing).
	prefixCheck func(ctx context.Context, name, label string)
	// store reads the live version, for prefixCheck.
	live func(ctx context.Context) (string, error)

	mu     sync.Mutex
	admin  sync.WaitGroup // admin faults running in the background
	cases  []PoisonCase
	adminE []string
	// adminFailed holds, per fault index, why its admin command failed.
	adminFailed map[int]string
	// serverErrs are servers the nemesis could not start again.
	serverErrs []string
}

func eachProxy(ps []*tcpproxy.Proxy, f func(*tcpproxy.Proxy)) {
	for _, p := range ps {
		f(p)
	}
}

// inject runs one fault; idx is its index in the report.
func (n *nemesis) inject(ctx context.Context, ft Fault, idx int) Event {
	f := n.fleet
	ev := Event{Fault: ft, Time: time.Now()}
	defer func() { ev.Ended = time.Now() }()
	switch ft.Kind {
	case FaultKill:
		r := f.pick(ft.Pick)
		if r == nil {
			ev.Skipped = "no replica"
			break
		}
		ev.Target = r.id
		f.remove(r)
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.done()
		nr, err := f.start()
		if err != nil {
			ev.Skipped = err.Error()
			break
		}
		ev.Target += " -> " + nr.id
	case FaultZombie:
		f.hold(ctx, ft, &ev, func(r *replica) { _ = r.cmd.Process.Signal(syscall.SIGSTOP) },
			func(r *replica) { _ = r.cmd.Process.Signal(syscall.SIGCONT) })
	case FaultPartition:
		f.hold(ctx, ft, &ev, func(r *replica) { eachProxy(r.kafka, (*tcpproxy.Proxy).Freeze) },
			func(r *replica) { eachProxy(r.kafka, (*tcpproxy.Proxy).Thaw) })
	case FaultRedisPartition:
		f.hold(ctx, ft, &ev, func(r *replica) { eachProxy(r.redis, (*tcpproxy.Proxy).Freeze) },
			func(r *replica) { eachProxy(r.redis, (*tcpproxy.Proxy).Thaw) })
	case FaultLatency:
		f.hold(ctx, ft, &ev, func(r *replica) { eachProxy(r.proxies(), func(p *tcpproxy.Proxy) { p.SetLatency(ft.Latency) }) },
			func(r *replica) { eachProxy(r.proxies(), func(p *tcpproxy.Proxy) { p.SetLatency(0) }) })
	case FaultReset:
		f.hold(ctx, ft, &ev, func(r *replica) {
			eachProxy(r.proxies(), func(p *tcpproxy.Proxy) { p.Refuse(true); p.Reset() })
		}, func(r *replica) { eachProxy(r.proxies(), func(p *tcpproxy.Proxy) { p.Refuse(false) }) })
	case FaultScaleUp:
		if f.size() >= f.max {
			ev.Skipped = fmt.Sprintf("already %d replicas", f.max)
			break
		}
		r, err := f.start()
		if err != nil {
			ev.Skipped = err.Error()
			break
		}
		ev.Target = r.id
	case FaultScaleDown:
		if f.size() <= f.min {
			ev.Skipped = fmt.Sprintf("only %d replica(s)", f.min)
			break
		}
		r := f.pick(ft.Pick)
		ev.Target = r.id
		f.remove(r)
		if err := terminate(r, 30*time.Second); err != nil {
			ev.Target += " (exit: " + err.Error() + ")"
		}
	case FaultBrokerKill:
		part := int32(ft.Pick % uint32(n.partitions))
		leader, err := leaderOf(ctx, n.topo.Brokers, n.topic, part)
		if err != nil {
			ev.Skipped = err.Error()
			break
		}
		n.serverDown(ctx, ft, &ev, n.topo.KafkaNodes[leader], fmt.Sprintf("leader of partition %d", part))
	case FaultRedisRestart:
		addr, name, err := n.topo.Redis.dataServer(ctx, "{"+n.projection+"}")
		if err != nil || name == "" {
			ev.Skipped = fmt.Sprintf("no Redis server to restart (%s): %v", addr, err)
			break
		}
		n.serverDown(ctx, ft, &ev, name, "holds the projection's keys")
	case FaultFailover:
		n.failover(ctx, &ev)
	case FaultRebuild:
		// Half the rebuilds keep the replaced version (checked at the
		// end), half drop it after a grace period (the retire path).
		if ft.Pick%2 == 0 {
			n.background(ctx, &ev, idx, nil, "rebuild", n.projection, "--yes", "--keep", "--reason", "chaos")
		} else {
			n.background(ctx, &ev, idx, nil, "rebuild", n.projection, "--yes", "--grace", "5s", "--reason", "chaos")
		}
	case FaultReplay:
		var before func(context.Context)
		if n.prefixCheck != nil && n.live != nil {
			before = func(ctx context.Context) {
				if name, err := n.live(ctx); err == nil {
					n.prefixCheck(ctx, name, "before the replay at "+ev.Time.UTC().Format("15:04:05.000"))
				}
			}
		}
		n.background(ctx, &ev, idx, before, "replay", n.projection, "--yes", "--reason", "chaos")
	case FaultWriterKill:
		if n.writers == nil {
			ev.Skipped = "no writer processes"
			break
		}
		target, err := n.writers.kill(ft.Pick)
		ev.Target = target
		if err != nil {
			ev.Skipped = err.Error()
		}
	case FaultWriterZombie:
		if n.writers == nil {
			ev.Skipped = "no writer processes"
			break
		}
		if ev.Target = n.writers.zombie(ctx, ft.Pick, ft.Stop); ev.Target == "" {
			ev.Skipped = "no writer"
		}
	case FaultPoison:
		kind := PoisonKinds[int(ft.Pick)%len(PoisonKinds)]
		c, err := n.poison.inject(ctx, kind)
		n.mu.Lock()
		n.cases = append(n.cases, c)
		n.mu.Unlock()
		ev.Target = kind + " " + c.Stream
		if err != nil {
			ev.Target += " (produce: " + err.Error() + ")"
		}
	}
	s := ft.String() + " " + ev.Target
	if ev.Skipped != "" {
		s += " skipped: " + ev.Skipped
	}
	n.logf("fault %s", strings.TrimSpace(s))
	return ev
}

// serverDown SIGKILLs the server name, waits ft.Stop and starts it again.
func (n *nemesis) serverDown(ctx context.Context, ft Fault, ev *Event, name, why string) {
	if name == "" {
		ev.Skipped = "unknown server"
		return
	}
	serverMu.Lock()
	defer serverMu.Unlock()
	ev.Target = name + " (" + why + ")"
	if err := runCtl(ctx, n.topo.Ctl, "pid", name); err != nil {
		ev.Skipped = name + " is not running: " + err.Error()
		return
	}
	if err := runCtl(ctx, n.topo.Ctl, "kill", name); err != nil {
		ev.Skipped = err.Error()
		return
	}
	select {
	case <-time.After(ft.Stop):
	case <-ctx.Done():
	}
	// Not ctx: a server left down would break every later run.
	fail := func(err error) {
		n.mu.Lock()
		n.serverErrs = append(n.serverErrs, fmt.Sprintf("%s: %s: %v", ft.Kind, name, err))
		n.mu.Unlock()
	}
	if err := runCtl(context.Background(), n.topo.Ctl, "start", name); err != nil {
		fail(err)
		return
	}
	// The next server fault waits until this one has recovered: every
	// partition fully replicated again, or the Redis replicas linked, so
	// two faults never add up to more than one server down.
	if err := n.waitRecovered(context.Background(), 2*time.Minute); err != nil {
		fail(err)
	}
}

// waitRecovered waits until every partition of every topic has its full
// ISR and every Redis replica of the topology is linked to its master.
func (n *nemesis) waitRecovered(ctx context.Context, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.topo.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for {
		last = n.recovered(ctx, adm)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not recovered within %v: %w", bound, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *nemesis) recovered(ctx context.Context, adm *kadm.Client) error {
	md, err := adm.Metadata(ctx)
	if err != nil {
		return err
	}
	if len(md.Brokers) < len(n.topo.KafkaNodes) {
		return fmt.Errorf("%d of %d brokers in the metadata", len(md.Brokers), len(n.topo.KafkaNodes))
	}
	for _, td := range md.Topics {
		for _, pd := range td.Partitions {
			if len(pd.ISR) < len(pd.Replicas) {
				return fmt.Errorf("%s partition %d: ISR %v of replicas %v", td.Topic, pd.Partition, pd.ISR, pd.Replicas)
			}
		}
	}
	if n.topo.Redis.MasterName == "" {
		return nil
	}
	for addr := range n.topo.Redis.Servers {
		c := redis.NewClient(&redis.Options{Addr: addr})
		info, err := c.Info(ctx, "replication").Result()
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("redis %s: %w", addr, err)
		}
		if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("redis %s: replica not linked to its master", addr)
		}
	}
	return nil
}

// failover asks a Sentinel to fail the master over and waits until the
// Sentinels name a new one.
func (n *nemesis) failover(ctx context.Context, ev *Event) {
	serverMu.Lock()
	defer serverMu.Unlock()
	before, _, err := n.topo.Redis.dataServer(ctx, "")
	if err != nil {
		ev.Skipped = err.Error()
		return
	}
	s := redis.NewSentinelClient(&redis.Options{Addr: n.topo.Redis.Addrs[0]})
	defer s.Close()
	if err := s.Failover(ctx, n.topo.Redis.MasterName).Err(); err != nil {
		ev.Skipped = "SENTINEL FAILOVER: " + err.Error()
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if after, _, err := n.topo.Redis.dataServer(ctx, ""); err == nil && after != before {
			ev.Target = n.topo.Redis.Servers[before] + " -> " + n.topo.Redis.Servers[after]
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	ev.Target = n.topo.Redis.Servers[before]
	ev.Skipped = "the Sentinels named no new master within 30s"
}

// background runs projectorctl args without holding up the next faults:
// an admin acts while replicas crash around it. before, when set, runs
// first. Its outcome is logged and kept for the report: a command that
// failed (or was refused, as a replay during a rebuild is) does not count
// as an injected fault.
func (n *nemesis) background(ctx context.Context, ev *Event, idx int, before func(context.Context), args ...string) {
	if n.ctl == nil {
		ev.Skipped = "no projectorctl"
		return
	}
	ev.Target = "projectorctl " + strings.Join(args, " ")
	at := ev.Time
	n.admin.Add(1)
	go func() {
		defer n.admin.Done()
		if before != nil {
			before(ctx)
		}
		err := n.ctl(ctx, args...)
		n.mu.Lock()
		defer n.mu.Unlock()
		if err != nil {
			if n.adminFailed == nil {
				n.adminFailed = map[int]string{}
			}
			n.adminFailed[idx] = err.Error()
			n.adminE = append(n.adminE, fmt.Sprintf("%s at %s: %v", args[0], at.UTC().Format("15:04:05.000"), err))
			n.logf("admin %s failed: %v", args[0], err)
			return
		}
		n.logf("admin %s done", args[0])
	}()
}
