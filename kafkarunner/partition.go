package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
)

// Partition states, as reported by [Runner.Partitions] and in replica
// reports. Only "running" (and "starting", until it fails) counts as
// working for readiness.
const (
	PartitionStarting  = "starting"   // taking the fence, checking the stored state
	PartitionRunning   = "running"    // applying records
	PartitionRetrying  = "retrying"   // a step failed (the store or the broker); retried with backoff
	PartitionFenced    = "fenced"     // another replica took the fence; waiting for the group to revoke the partition
	PartitionStateLost = "state-lost" // the store lost state the committed offsets rely on: needs a replay
	PartitionFailed    = "failed"     // stopped on an error; restarted with backoff
)

// PartitionStatus describes one assigned partition.
type PartitionStatus = controlplane.PartitionStatus

// partition is one assigned partition, from its assignment until it is
// revoked or lost. Its worker sessions come and go: a session that fails is
// followed by a new one after a backoff, with a new fence, the stored state
// checked again and the partition re-read from its committed offset. The
// inbox and the status outlive sessions.
//
// The poll loop delivers records to the inbox and never blocks on it: when
// the inbox is full, or no session is working, fetching of the partition is
// paused (franz-go keeps the position of a paused partition's unpolled
// records and fetches them again on resume), so one stuck partition never
// stops another, nor rebalances.
type partition struct {
	r  *Runner
	id int32

	mu       sync.Mutex
	inbox    []fetched
	inboxLen int  // records in the inbox
	paused   bool // fetching paused by us
	working  bool // a session takes from the inbox
	lastTake time.Time
	status   PartitionStatus

	notify chan struct{} // cap 1: the inbox got records, or quit
	quit   chan struct{} // closed by stop
	once   sync.Once
	commit bool // set before quit is closed: flush and commit before leaving
	done   chan struct{}
	// previous is the done of this partition's previous worker in this
	// runner, still stopping when the partition was assigned again; nil
	// if none. The worker starts after it (see run).
	previous <-chan struct{}
	// abandoned: a stop gave up on this worker (its projection ignores
	// cancellation); other stops no longer wait for it.
	abandoned atomic.Bool

	ctx    context.Context // cancelled when the partition is lost or aborted
	cancel context.CancelFunc
	// leaveGroup stops the membership the partition was assigned in (nil
	// without one): the replica leaves the group.
	leaveGroup context.CancelFunc

	// For Lag, read from other goroutines.
	highWatermark atomic.Int64
	position      atomic.Int64
	lastTimestamp atomic.Int64
	// parkedNow is the number of streams parked in the partition, as its
	// session last saw them (the projector.streams.parked gauge).
	parkedNow atomic.Int64
}

// fetched is one poll's records of a partition.
type fetched struct {
	records       []*kgo.Record
	highWatermark int64
}

func (r *Runner) newPartition(id int32) *partition {
	ctx, cancel := context.WithCancel(context.Background())
	p := &partition{
		r: r, id: id, notify: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel, leaveGroup: r.currentLeave(),
		status: PartitionStatus{Partition: id, State: PartitionStarting, Since: time.Now().UTC()},
	}
	return p
}

// Busy workers are paced by the poll loop, which waits while the inboxes
// that are not paused hold the limit (Runner.waitForRoom): memory stays
// bounded by the limit plus a poll. Fetching of a single partition pauses
// only when its worker is stuck (it took nothing for stuckAfter while the
// poll loop waited) or has no session, and resumes when the inbox is down
// to a batch. Pausing is kept for partitions that do hold the others back:
// it drops what the client buffered for the partition (fetched again on
// resume), and a resumed partition may wait for a fetch in flight to the
// same broker (up to FetchMaxWait) before its first records arrive.
const stuckAfter = 3 * time.Second

func (r *Runner) inboxLimit() int {
	r.partsMu.Lock()
	n := len(r.parts)
	r.partsMu.Unlock()
	return 2 * r.cfg.BatchSize * max(1, n)
}

func (p *partition) resumeAt() int { return p.r.cfg.BatchSize }

// deliver hands a poll's records to the partition. It never blocks. Called
// by the poll loop.
func (p *partition) deliver(f fetched) {
	p.highWatermark.Store(f.highWatermark)
	p.mu.Lock()
	if len(p.inbox) == 0 {
		p.lastTake = time.Now() // stuck is measured from when records wait
	}
	p.inbox = append(p.inbox, f)
	p.inboxLen += len(f.records)
	p.mu.Unlock()
	p.signal()
}

func (p *partition) signal() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// take removes the oldest batch from the inbox; ok is false when it is
// empty. Called by the session.
func (p *partition) take() (fetched, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inbox) == 0 {
		return fetched{}, false
	}
	f := p.inbox[0]
	p.inbox[0] = fetched{}
	p.inbox = p.inbox[1:]
	p.inboxLen -= len(f.records)
	p.lastTake = time.Now()
	p.r.signalRoom()
	if p.paused && p.working && p.inboxLen <= p.resumeAt() {
		p.resumeLocked()
	}
	return f, true
}

// pauseLocked and resumeLocked change the client's fetching of the
// partition only while this is its current worker: a worker left behind
// (a projection that ignored cancellation) must not resume or pause a
// partition a newer worker owns.
func (p *partition) pauseLocked() {
	if p.paused || p.r.client == nil || p.r.partitionOf(p.id) != p {
		return
	}
	p.paused = true
	p.r.client.PauseFetchPartitions(map[string][]int32{p.r.cfg.Topic: {p.id}})
}

func (p *partition) resumeLocked() {
	if !p.paused || p.r.client == nil || p.r.partitionOf(p.id) != p {
		return
	}
	p.paused = false
	p.r.client.ResumeFetchPartitions(map[string][]int32{p.r.cfg.Topic: {p.id}})
}

// queued returns the records in the inbox, 0 while fetching is paused (they
// do not hold the poll loop back).
func (p *partition) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		return 0
	}
	return p.inboxLen
}

// pauseIfStuck pauses fetching of the partition when records have waited
// in its inbox for stuckAfter without the worker taking any. Called by the
// poll loop while it waits for room.
func (p *partition) pauseIfStuck() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inboxLen > 0 && time.Since(p.lastTake) >= stuckAfter {
		p.pauseLocked()
	}
}

// setWorking records whether a session takes from the inbox: fetching is
// paused while none does.
func (p *partition) setWorking(working bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.working = working
	if !working {
		p.pauseLocked()
	} else if p.inboxLen <= p.resumeAt() {
		p.resumeLocked()
	}
}

// clearInbox drops every record delivered so far; the partition is about to
// be read again from its committed offset. Called by the poll loop.
func (p *partition) clearInbox() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.inbox)
	p.inbox = p.inbox[:0]
	p.inboxLen = 0
}

// setStatus records the partition's state; err may be nil.
func (p *partition) setStatus(state string, err error) {
	p.mu.Lock()
	changed := p.status.State != state
	if changed {
		p.status.State, p.status.Since = state, time.Now().UTC()
	}
	p.status.Error = ""
	if err != nil {
		p.status.Error = err.Error()
	}
	p.mu.Unlock()
	if err != nil {
		p.r.setLastError(fmt.Errorf("partition %d %s: %w", p.id, state, err))
	}
}

func (p *partition) statusNow() PartitionStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// stop asks the partition to leave: with commit, its session flushes and
// commits what it applied first; without (the partition was lost), it
// stops at once and writes nothing more.
func (p *partition) stop(commit bool) {
	p.once.Do(func() {
		p.commit = commit
		if !commit {
			p.cancel()
		}
		close(p.quit)
		p.signal()
	})
}

// abort cancels the partition's writes, for a stop past its deadline.
func (p *partition) abort() { p.cancel() }

func (p *partition) quitting() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

// sleep waits d, or until the partition is stopped; it reports whether the
// whole d passed.
func (p *partition) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.quit:
		return false
	}
}

// afterPrevious waits until the partition's previous worker is done, so
// that two workers of one partition never apply side by side; it reports
// false if this one was stopped meanwhile. A previous worker whose
// projection ignores cancellation is waited for RevokeTimeout at most:
// its writes were cancelled, and the fence refuses its cursors.
func (p *partition) afterPrevious() bool {
	if p.previous == nil {
		return true
	}
	t := time.NewTimer(p.r.cfg.RevokeTimeout)
	defer t.Stop()
	select {
	case <-p.previous:
	case <-p.quit:
		return false
	case <-t.C:
		p.r.cfg.Logger.Warn("the partition's previous worker has not returned; starting anyway", "group", p.r.cfg.Group, "partition", p.id)
	}
	return true
}

// run supervises the partition's sessions until it is stopped. It owns the
// partition's goroutine.
func (p *partition) run() {
	defer close(p.done)
	defer p.cancel()
	if !p.afterPrevious() {
		return
	}
	first := true
	failures := 0
	for !p.quitting() {
		s, err := p.startSession(first)
		if err == nil {
			failures = 0
			err = s.run()
			if p.quitting() {
				return
			}
		}
		if p.quitting() {
			return
		}
		first = false
		failures++
		p.setWorking(false)
		wait := p.r.cfg.Retry.backoff(failures)
		switch {
		case p.replayBegun(err):
			// A replay began: it raised the epoch (this session's fence is
			// of the old one) or its reset of the read model is pending
			// (the fence is of the new one). The write was refused:
			// nothing was stored, nothing is committed, nothing parked.
			// The whole replica leaves the group, as watchControl would on
			// its next read, and waits for the replay (waitRunnable); the
			// partition is not retried meanwhile.
			p.setStatus(PartitionFenced, err)
			p.r.cfg.Logger.Info("a replay began (the epoch was raised or the reset of the read model is pending): write refused as expected, nothing stored or committed; leaving the group until the read model is reset",
				"partition", p.id, "err", err)
			p.leaveGroup()
			wait = p.r.cfg.FencedWait
		case errors.Is(err, controlplane.ErrVersionClosed):
			// A rebuild replaced this read-model version (or was
			// aborted): nothing more is written to it, and the
			// VersionedRunner stops this runner at its next refresh.
			p.setStatus(PartitionFenced, err)
			p.r.cfg.Logger.Info("this read-model version was closed by a rebuild: nothing more is written to it; waiting to be stopped", "partition", p.id, "err", err)
			wait = p.r.cfg.FencedWait
		case errors.Is(err, controlplane.ErrFenced):
			// Another replica took the fence: this replica is a zombie
			// about to learn that the group moved the partition, or the
			// fence was taken out of band. Give the group time to revoke
			// it before taking the fence back.
			p.setStatus(PartitionFenced, err)
			p.r.cfg.Logger.Warn("partition fenced by another replica; waiting for the group to move it", "partition", p.id, "err", err, "retry_in", p.r.cfg.FencedWait)
			wait = p.r.cfg.FencedWait
		case errors.Is(err, ErrCommittedStateLost):
			// The start of a session found the committed offset beyond
			// what the store covers: only a replay helps. Look again now
			// and then (the store may be restored from a backup).
			p.setStatus(PartitionStateLost, err)
			p.r.cfg.Logger.Error("the store lost state this partition's committed offset relies on; the partition stops (replay the projection to rebuild)", "partition", p.id, "err", err)
			wait = max(wait, p.r.cfg.StateLostRecheck)
		case errors.Is(err, controlplane.ErrStateLost):
			// A write found that the store lost writes: a new session
			// checks whether they were committed (then the partition
			// stops) or not (then it reads them again).
			p.setStatus(PartitionFailed, err)
			p.r.cfg.Logger.Error("the store lost writes of this partition; checking what the committed offset relies on", "partition", p.id, "err", err)
		default:
			p.setStatus(PartitionFailed, err)
			p.r.cfg.Logger.Error("partition worker failed; restarting it", "partition", p.id, "err", err, "attempt", failures, "retry_in", wait)
		}
		p.r.metrics.partitionRestarts.Add(p.ctx, 1)
		if !p.sleep(wait) {
			return
		}
	}
}

// replayBegun reports whether err, a session's error, is a write refused
// because a replay began: the reset of the read model is pending, or the
// fence is stale while the control state says the replicas are paused or a
// reset is pending. Without a control plane (nothing would tell the
// replica when to come back) it is false.
func (p *partition) replayBegun(err error) bool {
	if p.r.cfg.Control == nil || p.leaveGroup == nil {
		return false
	}
	if errors.Is(err, controlplane.ErrResetPending) {
		return true
	}
	if !errors.Is(err, controlplane.ErrFenced) {
		return false
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	c, cerr := p.r.cfg.Control.Control(ctx, p.r.cfg.Projection.Name())
	return cerr == nil && (c.Paused || c.ResetPending())
}
