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

	"github.com/projector-dev/projector/internal/tcpproxy"
)

// Fault kinds.
const (
	FaultKill      = "kill"       // SIGKILL a replica, start a new one
	FaultZombie    = "zombie"     // SIGSTOP a replica past its session, then SIGCONT
	FaultScaleUp   = "scale-up"   // start one more replica
	FaultScaleDown = "scale-down" // SIGTERM a replica
	// FaultPartition holds every byte between a replica and Kafka (its
	// own proxy) past its session, while it keeps running and reaching
	// Redis, then lets the traffic through.
	FaultPartition = "partition"
)

// FaultKinds are the kinds the nemesis draws from.
var FaultKinds = []string{FaultKill, FaultZombie, FaultScaleUp, FaultScaleDown, FaultPartition}

// Fault is one planned fault: At after the start, Kind, Pick (which replica,
// modulo the replicas alive then) and, for a zombie or a partition, how long
// it lasts.
type Fault struct {
	At   time.Duration `json:"at"`
	Kind string        `json:"kind"`
	Pick uint32        `json:"pick"`
	Stop time.Duration `json:"stop,omitempty"`
}

func (f Fault) String() string {
	s := fmt.Sprintf("t+%-7s %-10s pick=%d", f.At.Round(100*time.Millisecond), f.Kind, f.Pick)
	if f.Stop > 0 {
		s += " stop=" + f.Stop.Round(100*time.Millisecond).String()
	}
	return s
}

// Schedule plans the faults of a run from seed alone: the same seed and
// duration give the same schedule. Faults do not overlap: the next one
// starts after a zombie's stop ended. Nothing is planned in the last
// seconds of the run.
func Schedule(seed uint64, duration, session time.Duration) []Fault {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Fault
	at := 2 * time.Second
	end := duration - 2*time.Second
	for {
		at += 2*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
		if at >= end {
			return out
		}
		f := Fault{At: at, Kind: FaultKinds[rng.IntN(len(FaultKinds))], Pick: rng.Uint32()}
		if f.Kind == FaultZombie || f.Kind == FaultPartition {
			// Longer than the session, so the group moves its partitions.
			f.Stop = session + 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
			at += f.Stop
		}
		out = append(out, f)
	}
}

// Event is one fault as executed.
type Event struct {
	Fault
	Time    time.Time `json:"time"`
	Replica string    `json:"replica,omitempty"`
	Skipped string    `json:"skipped,omitempty"` // why the fault was not injected
	Ended   time.Time `json:"ended"`
	// CatchUpSeconds is the time from the end of the fault until the group
	// had committed every record appended before that end (-1: not within
	// the bound, or not measured).
	CatchUpSeconds float64 `json:"catch_up_seconds"`
}

// replica is one worker process, whose Kafka traffic goes through a proxy
// of its own.
type replica struct {
	id    string
	cmd   *exec.Cmd
	log   *os.File
	proxy *tcpproxy.Proxy
}

// done releases what the replica held once its process exited.
func (r *replica) done() {
	_ = r.log.Close()
	r.proxy.Close()
}

// fleet starts and signals worker processes.
type fleet struct {
	binary string
	kafka  string   // the broker every replica's proxy forwards to
	args   []string // worker flags, without --replica-id
	dir    string   // worker logs
	min    int
	max    int

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
	px, err := tcpproxy.New(f.kafka)
	if err != nil {
		_ = logf.Close()
		return nil, err
	}
	cmd := exec.Command(f.binary, append(append([]string{"worker"}, f.args...), "--replica-id", id, "--kafka-proxy", px.Addr)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		px.Close()
		return nil, fmt.Errorf("start worker %s: %w", id, err)
	}
	r := &replica{id: id, cmd: cmd, log: logf, proxy: px}
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
			r.proxy.Thaw()
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
	ev.Replica = r.id
	begin(r)
	select {
	case <-time.After(ft.Stop):
	case <-ctx.Done():
	}
	end(r)
}

// inject runs one fault against the fleet.
func (f *fleet) inject(ctx context.Context, ft Fault, logf func(string, ...any)) Event {
	ev := Event{Fault: ft, Time: time.Now()}
	defer func() { ev.Ended = time.Now() }()
	switch ft.Kind {
	case FaultKill:
		r := f.pick(ft.Pick)
		if r == nil {
			ev.Skipped = "no replica"
			break
		}
		ev.Replica = r.id
		f.remove(r)
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.done()
		nr, err := f.start()
		if err != nil {
			ev.Skipped = err.Error()
			break
		}
		ev.Replica += " -> " + nr.id
	case FaultZombie:
		f.hold(ctx, ft, &ev, func(r *replica) { _ = r.cmd.Process.Signal(syscall.SIGSTOP) },
			func(r *replica) { _ = r.cmd.Process.Signal(syscall.SIGCONT) })
	case FaultPartition:
		f.hold(ctx, ft, &ev, func(r *replica) { r.proxy.Freeze() }, func(r *replica) { r.proxy.Thaw() })
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
		ev.Replica = r.id
	case FaultScaleDown:
		if f.size() <= f.min {
			ev.Skipped = fmt.Sprintf("only %d replica(s)", f.min)
			break
		}
		r := f.pick(ft.Pick)
		ev.Replica = r.id
		f.remove(r)
		if err := terminate(r, 30*time.Second); err != nil {
			ev.Replica += " (exit: " + err.Error() + ")"
		}
	}
	s := ft.String() + " " + ev.Replica
	if ev.Skipped != "" {
		s += " skipped: " + ev.Skipped
	}
	logf("fault %s", strings.TrimSpace(s))
	return ev
}
