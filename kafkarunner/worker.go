package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// session is one worker session of a partition: one fence, the stored state
// checked once at its start, the partition read from where the session
// started. Only its goroutine (the partition's) touches its fields.
type session struct {
	p     *partition
	r     *Runner
	fence *controlplane.Fence
	ctx   context.Context // the partition's context, carrying the fence

	cursors map[string]uint64      // last applied sequence per stream
	heads   map[string]head        // the event applied at each cursor, where known
	recent  framework.RecentEvents // the last events applied per stream, for conflicts
	// parked holds, per stream parked at a record of this partition, the
	// offset of that record: the stream's records from there on are held.
	// A stream parked at another partition's record is not held here.
	parked map[string]int64
	// handled is the highest offset whose park, hold or dead letter is
	// done: a batch processed again after a failed step skips up to it.
	handled int64
	// resuming are the streams a resume works on, while it runs.
	resuming map[string]*resuming
	applied  int64 // applied since the last metrics update

	dirty     map[string]bool // streams whose cursor moved since the last flush
	last      *kgo.Record     // last record processed completely: commit up to it
	committed int64           // the offset committed (next to read); -1 for none

	lastFlush, lastParked, lastCheck time.Time
}

// head is the event applied at a stream's cursor.
type head struct {
	seq     uint64
	eventID string // "" when unknown
	offset  int64  // in this partition; -1 when unknown
}

// errStopping reports that the partition was told to stop while a step
// waited; what was applied before is flushed when the partition stops with
// commit.
var errStopping = kafkaio.ErrStopped

// startSession takes a fence for the partition, checks that the store holds
// the state the group's committed offset relies on, loads the parked
// streams and, unless this is the partition's first session, has the poll
// loop read the partition again from its committed offset.
func (p *partition) startSession(first bool) (*session, error) {
	r := p.r
	name := r.cfg.Projection.Name()
	p.setStatus(PartitionStarting, nil)
	s := &session{
		p: p, r: r, ctx: p.ctx,
		cursors: map[string]uint64{}, heads: map[string]head{}, parked: map[string]int64{},
		dirty: map[string]bool{}, lastFlush: time.Now(), lastCheck: time.Now(), handled: -1,
	}
	if r.cfg.Fencer != nil {
		f, err := r.cfg.Fencer.AcquireFence(p.ctx, name, p.id)
		if err != nil {
			return nil, fmt.Errorf("kafkarunner: runner %s: fence for partition %d: %w", r.cfg.Group, p.id, err)
		}
		s.fence = &f
		s.ctx = controlplane.WithFence(p.ctx, f)
	}
	committed, err := r.committedOffset(s.ctx, p.id)
	if err != nil {
		return nil, err
	}
	s.committed = committed
	// Progress is written with the fence (see flush): without a fence there
	// is none to compare with.
	if ps, ok := r.cfg.Checkpoints.(controlplane.ProgressStore); ok && s.fence != nil && committed >= 0 {
		progress, err := ps.Progress(s.ctx, name, p.id)
		if err != nil {
			return nil, fmt.Errorf("kafkarunner: progress of partition %d: %w", p.id, err)
		}
		switch {
		case progress.Recorded && progress.Next >= committed:
		case progress.Untracked:
			r.cfg.Logger.Warn("the partition's state was written without progress tracking (an older version): adopting the committed offset; a loss before it cannot be detected",
				"partition", p.id, "committed", committed)
		case r.resetPending(s.ctx):
			// A replay began: it recorded the offsets it resets the group
			// to as the new epoch's progress before the group is empty, so
			// the committed offset is still the old epoch's. Not lost
			// state: the replica leaves the group (see partition.run).
			return nil, fmt.Errorf("kafkarunner: partition %d: committed offset %d is ahead of the new epoch's progress: %w", p.id, committed, controlplane.ErrResetPending)
		default:
			lost := &StateLostError{Projection: name, Partition: p.id, Committed: committed, Progress: -1}
			if progress.Recorded {
				lost.Progress = progress.Next
			}
			if s.fence != nil {
				lost.Epoch = s.fence.Epoch
			}
			return nil, lost
		}
	}
	if err := s.refreshParked(); err != nil {
		return nil, err
	}
	if !first {
		if err := r.reposition(p, committed); err != nil {
			return nil, err
		}
	}
	if committed >= 0 {
		p.position.Store(committed)
	}
	p.setWorking(true)
	p.setStatus(PartitionRunning, nil)
	r.cfg.Logger.Info("partition worker started", "group", r.cfg.Group, "partition", p.id, "fence", s.fence, "committed", committed, "first", first)
	return s, nil
}

// resetPending reports whether the control state says a reset of the read
// model is pending (false when it cannot be read, or there is none).
func (r *Runner) resetPending(ctx context.Context) bool {
	if r.cfg.Control == nil {
		return false
	}
	c, err := r.cfg.Control.Control(ctx, r.cfg.Projection.Name())
	return err == nil && c.ResetPending()
}

// committedOffset asks the group coordinator for the partition's committed
// offset: -1 when nothing is committed.
func (r *Runner) committedOffset(ctx context.Context, partition int32) (int64, error) {
	fetched, err := kadm.NewClient(r.client).FetchOffsets(ctx, r.cfg.Group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafkarunner: committed offsets of group %s: %w", r.cfg.Group, err)
	}
	if o, ok := fetched.Lookup(r.cfg.Topic, partition); ok && o.At >= 0 {
		return o.At, nil
	}
	return -1, nil
}

// run applies the partition's records until the partition is stopped
// (nil) or the session fails with an error it cannot retry in place
// (fenced, state lost, the partition lost).
func (s *session) run() error {
	p := s.p
	cfg := s.r.cfg
	tick := time.NewTicker(min(cfg.FlushInterval, cfg.ParkedRefresh, cfg.StateCheckInterval))
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return s.leave()
		case <-p.notify:
			for !p.quitting() {
				if err := s.waitHold(); err != nil {
					return s.failed(err)
				}
				if p.quitting() {
					break
				}
				f, ok := p.take()
				if !ok {
					break
				}
				if err := s.step(func() error { return s.process(f.records) }); err != nil {
					return s.failed(err)
				}
				if time.Since(s.lastFlush) >= cfg.FlushInterval || len(s.dirty) >= cfg.BatchSize {
					if err := s.step(s.flush); err != nil {
						return s.failed(err)
					}
				}
				// A backlog keeps the inbox full: resume resolved
				// streams between batches too, not only when idle.
				if time.Since(s.lastParked) >= cfg.ParkedRefresh {
					if err := s.step(s.resumeResolved); err != nil {
						return s.failed(err)
					}
				}
			}
		case <-tick.C:
			if time.Since(s.lastFlush) >= cfg.FlushInterval {
				if err := s.step(s.flush); err != nil {
					return s.failed(err)
				}
			}
			if time.Since(s.lastParked) >= cfg.ParkedRefresh && s.r.HeldUntil().IsZero() {
				if err := s.step(s.resumeResolved); err != nil {
					return s.failed(err)
				}
			}
			if time.Since(s.lastCheck) >= cfg.StateCheckInterval {
				if err := s.step(s.checkState); err != nil {
					return s.failed(err)
				}
			}
		}
	}
}

// failed ends the session on err: stopping is a clean end (after the final
// flush), anything else goes to the partition's supervisor.
func (s *session) failed(err error) error {
	if errors.Is(err, errStopping) || s.p.quitting() {
		return s.leave()
	}
	return err
}

// leave ends the session because the partition stops: with commit, it
// stores what was applied and commits once more (a failure is logged: the
// next owner re-reads from the last commit and the cursors skip what was
// applied).
func (s *session) leave() error {
	if s.p.commit {
		err := s.flush()
		switch {
		case err == nil:
		case errors.Is(err, controlplane.ErrResetPending) || errors.Is(err, controlplane.ErrFenced):
			// Expected when a replay began (it raises the epoch before the
			// replicas leave) or another replica owns the partition now:
			// nothing was stored, and nothing is committed.
			s.r.cfg.Logger.Info("final flush refused (fenced: a replay began, or the partition moved): nothing stored or committed; the next owner re-reads from the last commit",
				"partition", s.p.id, "err", err)
		default:
			s.r.cfg.Logger.Warn("final flush failed; the next owner re-reads from the last commit", "partition", s.p.id, "err", err)
		}
	}
	return nil
}

// fatal reports errors a session cannot retry in place.
func fatal(err error) bool {
	return errors.Is(err, controlplane.ErrFenced) || errors.Is(err, controlplane.ErrStateLost) || errors.Is(err, ErrCommittedStateLost) ||
		errors.Is(err, controlplane.ErrResetPending) || errors.Is(err, controlplane.ErrVersionClosed) ||
		errors.Is(err, errStopping) || errors.Is(err, context.Canceled)
}

// step runs fn until it succeeds, retrying in place with backoff while it
// fails with an error that retrying may cure (the store or the broker is
// unreachable): a retried batch skips what it applied before, by the
// cursors. Meanwhile the partition is reported as retrying. It returns nil,
// errStopping when the partition is told to stop meanwhile, or the first
// error it must not retry.
func (s *session) step(fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if attempt > 1 {
				s.p.setStatus(PartitionRunning, nil)
			}
			return nil
		}
		if fatal(err) || s.p.ctx.Err() != nil {
			return err
		}
		s.p.setStatus(PartitionRetrying, err)
		s.r.cfg.Logger.Warn("partition worker step failed; retrying", "partition", s.p.id, "attempt", attempt, "err", err)
		if !s.p.sleep(s.r.cfg.Retry.backoff(attempt)) {
			return errStopping
		}
	}
}

// flush stores the cursors (and heads) the session moved and the progress
// it made, then commits the offsets processed.
func (s *session) flush() error {
	s.lastFlush = time.Now()
	next := int64(-1)
	if s.last != nil {
		next = s.last.Offset + 1
	}
	commit := next > s.committed
	if len(s.dirty) == 0 && !commit {
		return nil
	}
	name := s.r.cfg.Projection.Name()
	start := time.Now()
	if ps, ok := s.r.cfg.Checkpoints.(controlplane.ProgressStore); ok && s.fence != nil {
		heads := make([]controlplane.StreamHead, 0, len(s.dirty))
		for id := range s.dirty {
			heads = append(heads, s.streamHead(id))
		}
		if err := ps.AdvancePartition(s.ctx, name, s.p.id, heads, max(next, s.committed, 0)); err != nil {
			return fmt.Errorf("kafkarunner: store %d cursors of partition %d: %w", len(heads), s.p.id, err)
		}
	} else if len(s.dirty) > 0 {
		cursors := make(map[string]uint64, len(s.dirty))
		for id := range s.dirty {
			cursors[id] = s.cursors[id]
		}
		if err := s.r.cfg.Checkpoints.Advance(s.ctx, name, cursors); err != nil {
			return fmt.Errorf("kafkarunner: store %d cursors of partition %d: %w", len(cursors), s.p.id, err)
		}
	}
	s.r.metrics.checkpointLatency.Record(s.ctx, time.Since(start).Seconds())
	clear(s.dirty)
	s.lastCheck = time.Now()
	if !commit {
		return nil
	}
	if err := s.r.client.CommitRecords(s.ctx, s.last); err != nil {
		return fmt.Errorf("kafkarunner: commit offset %d of partition %d: %w", next, s.p.id, err)
	}
	s.committed = next
	return nil
}

func (s *session) streamHead(id string) controlplane.StreamHead {
	h := s.heads[id]
	out := controlplane.StreamHead{StreamID: id, Sequence: s.cursors[id]}
	if h.seq == out.Sequence && h.eventID != "" {
		out.EventID = h.eventID
		if h.offset >= 0 {
			out.Position = &framework.Position{Partition: s.p.id, Offset: h.offset}
		}
	}
	return out
}

// checkState asks the store whether the fence is still current and every
// write of the session is still there, while the partition is idle.
func (s *session) checkState() error {
	s.lastCheck = time.Now()
	ps, ok := s.r.cfg.Checkpoints.(controlplane.ProgressStore)
	if !ok || s.fence == nil {
		return nil
	}
	return ps.CheckState(s.ctx, s.r.cfg.Projection.Name())
}
