package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/controlplane"
)

// ReplayRequest asks for a replay of a projection's read model in place,
// by resetting its consumer group's offsets.
type ReplayRequest struct {
	// Projection is the name as [Client.Projection] takes it.
	Projection string
	// Target is where the offsets go; the zero value is the start.
	Target ReplayTarget
	// By and Reason are recorded with the replay.
	By     string
	Reason string
	// AllowTruncated lets a replay to the start run on a topic that no
	// longer starts at offset 0 (the model loses the streams whose events
	// are gone).
	AllowTruncated bool
	// DryRun (PlanReplay only) plans even while a rebuild is in progress.
	DryRun bool
	// EmptyTimeout is how long to wait for the replicas to leave the
	// group (default 2 minutes).
	EmptyTimeout time.Duration
	// Wait follows the rebuild of the read model until the lag is zero,
	// for at most WaitTimeout (default an hour).
	Wait        bool
	WaitTimeout time.Duration
	// OnEvent, if set, is called with each step as it happens.
	OnEvent func(ReplayEvent)
}

func (r *ReplayRequest) defaults() {
	if r.EmptyTimeout <= 0 {
		r.EmptyTimeout = 2 * time.Minute
	}
	if r.WaitTimeout <= 0 {
		r.WaitTimeout = time.Hour
	}
}

func (r *ReplayRequest) emit(e ReplayEvent) {
	if r.OnEvent != nil {
		r.OnEvent(e)
	}
}

// ReplayStep names a step of a replay reported through
// ReplayRequest.OnEvent.
type ReplayStep string

// Steps of a replay, in the order they happen.
const (
	ReplayStarted  ReplayStep = "started"  // a new replay was recorded (Replay)
	ReplayResuming ReplayStep = "resuming" // an interrupted replay goes on from Replay.Phase
	// ReplayEpochRaised: in one step the replicas were paused, the epoch
	// raised from From to Epoch and the reset of the read model requested;
	// Cleared are the parked streams of the old epoch it cleared.
	ReplayEpochRaised ReplayStep = "epoch-raised"
	// ReplayEpochWasRaised: the replicas were paused; Epoch had been raised
	// before an interruption and was not raised again.
	ReplayEpochWasRaised ReplayStep = "epoch-was-raised"
	ReplayWaitingEmpty   ReplayStep = "waiting-empty" // waiting for Group to empty
	// ReplayOffsetsReset: the group's offsets were reset to Replay.To;
	// Epoch is the epoch (kept when Replay.KeepModel).
	ReplayOffsetsReset ReplayStep = "offsets-reset"
	ReplayResumed      ReplayStep = "resumed"      // the replicas were resumed: one drops the read model, all rebuild
	ReplayStaysPaused  ReplayStep = "stays-paused" // paused before the replay: resume it to rebuild
	// ReplayProgress (with Wait): Done of Total records of the rebuild.
	ReplayProgress ReplayStep = "progress"
	// ReplayCaughtUp (with Wait): the rebuild caught up with the topic
	// as it was at the resume; Lag is the live lag now; Parked the streams
	// that parked during the rebuild (the replay then fails).
	ReplayCaughtUp ReplayStep = "caught-up"
)

// ReplayEvent is a step of a replay.
type ReplayEvent struct {
	Step    ReplayStep
	Replay  controlplane.Replay // the replay's record as of the step
	Group   string
	Epoch   uint64
	From    uint64
	Cleared []controlplane.ParkedStream
	Done    int64
	Total   int64
	Lag     int64
	Parked  []controlplane.ParkedStream
}

// ReplayPlan is what a replay would do, as [Client.PlanReplay] found it.
type ReplayPlan struct {
	Projection Projection
	Topic      string
	Target     ReplayTarget
	// KeepModel: the replay keeps the epoch, the read model and its
	// cursors (a replay to a time or offsets).
	KeepModel bool
	// Epoch is the projection's epoch now.
	Epoch uint64
	// Status is the projection's status now (members, lag, replicas).
	Status Status
}

// Check refuses a replay to the start while replicas report and none of
// them can reset the read model.
func (p ReplayPlan) Check() error {
	if !p.KeepModel && len(p.Status.Replicas) > 0 && !p.Status.Resettable() {
		return refused("no running replica of %s can reset its read model (the projection does not implement framework.Resetter)", p.Projection.Name)
	}
	return nil
}

// OffsetMove is what a replay does to one partition's committed offset.
type OffsetMove struct {
	Topic     string
	Partition int32
	Current   int64 // -1: nothing committed
	New       int64
}

// PlanReplay checks that req can start and returns its plan; it changes
// nothing. It refuses (ErrRefused) a retired version, a replay while
// another is in progress, a rebuild in progress (unless req.DryRun), and a
// replay to the start of a truncated topic (unless req.AllowTruncated).
// [ReplayPlan.Check] has the last refusal, once the plan is shown.
func (c *Client) PlanReplay(ctx context.Context, req ReplayRequest) (ReplayPlan, error) {
	p, err := c.Projection(ctx, req.Projection)
	if err != nil {
		return ReplayPlan{}, err
	}
	return c.planReplay(ctx, p, req)
}

func (c *Client) planReplay(ctx context.Context, p Projection, req ReplayRequest) (ReplayPlan, error) {
	a := c.cfg.Admin
	adm, err := c.kafka("a replay")
	if err != nil {
		return ReplayPlan{}, err
	}
	if err := p.Writable(); err != nil {
		return ReplayPlan{}, err
	}
	ctl, err := a.Control(ctx, p.Name)
	if err != nil {
		return ReplayPlan{}, err
	}
	if cur := ctl.Replay; cur != nil && (cur.Phase == controlplane.ReplayPausing || cur.Phase == controlplane.ReplayResetting) {
		return ReplayPlan{}, refused("replay %s of %s is in progress since %s (phase %s, by %s): continue it with --resume or give it up with --abort",
			cur.ID, p.Name, cur.StartedAt.Format(time.RFC3339), cur.Phase, cur.By)
	}
	// A rebuild beside the live version switches the live pointer when it
	// has caught up: a replay in place of either version meanwhile would
	// race it.
	if vs, err := a.Versions(ctx, p.Base); err != nil {
		return ReplayPlan{}, err
	} else if b := vs.Building; b != nil && !req.DryRun {
		return ReplayPlan{}, refused("a rebuild of %s to v%d is in progress since %s (by %s): wait for it (rebuild %s --status) or abort it (rebuild %s --abort) before a replay",
			p.Base, b.Version, b.StartedAt.Format(time.RFC3339), b.By, p.Base, p.Base)
	}
	if err := req.Target.validate(); err != nil {
		return ReplayPlan{}, err
	}
	plan := ReplayPlan{Projection: p, Topic: c.cfg.Topic, Target: req.Target, KeepModel: req.Target.KeepsModel()}
	if plan.Epoch, err = a.Epoch(ctx, p.Name); err != nil {
		return ReplayPlan{}, err
	}
	if plan.Status, err = c.status(ctx, p); err != nil {
		return ReplayPlan{}, err
	}
	if !plan.KeepModel && !req.AllowTruncated {
		starts, err := adm.ListStartOffsets(ctx, c.cfg.Topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return ReplayPlan{}, fmt.Errorf("start offsets of %s: %w", c.cfg.Topic, err)
		}
		if t := TruncatedPartitions(starts); t != "" {
			return ReplayPlan{}, refused("the topic %s no longer starts at offset 0 (%s): its earlier events were deleted (retention or DeleteRecords), and a replay to the start would drop the read model and rebuild it without the streams whose events are gone. "+
				"Use projectorctl rebuild (it keeps the live version and does not switch while streams are missing), or pass --allow-truncated to accept the loss", c.cfg.Topic, t)
		}
	}
	return plan, nil
}

// OffsetMoves returns, per partition, the group's committed offset and the
// one the replay would set, as kafka-consumer-groups --dry-run shows them.
func (c *Client) OffsetMoves(ctx context.Context, plan ReplayPlan) ([]OffsetMove, error) {
	target, err := c.targetOffsets(ctx, plan.Target)
	if err != nil {
		return nil, err
	}
	committed, err := c.committedOffsets(ctx, plan.Projection.Group)
	if err != nil {
		return nil, err
	}
	var out []OffsetMove
	for _, o := range target.Sorted() {
		m := OffsetMove{Topic: o.Topic, Partition: o.Partition, Current: -1, New: o.At}
		if got, ok := committed.Lookup(o.Topic, o.Partition); ok && got.At >= 0 {
			m.Current = got.At
		}
		out = append(out, m)
	}
	return out, nil
}

func newReplayID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Replay starts a replay and carries it through: plans it as
// [Client.PlanReplay] does (refusing what it refuses, and
// [ReplayPlan.Check]), records it, then runs it phase by phase, each
// recorded before it starts.
//
// To the start: in one step the replicas are paused, the epoch is raised
// and the reset of the read model requested (every write is refused from
// then on until the reset is done); once the group is empty its offsets go
// to the start offsets listed before the first step; the replicas resume,
// exactly one drops the read model, and they rebuild. To a time or
// offsets: the replicas pause and leave, the offsets move back (refused if
// one would move forward, past events never processed), and the epoch,
// the read model and its cursors are kept.
//
// With req.Wait it follows the rebuild until the committed offsets reach
// the end of the topic as it was at the resume, and fails if a stream
// parked meanwhile. It returns the replay's record.
func (c *Client) Replay(ctx context.Context, req ReplayRequest) (controlplane.Replay, error) {
	req.defaults()
	req.DryRun = false
	plan, err := c.PlanReplay(ctx, req)
	if err != nil {
		return controlplane.Replay{}, err
	}
	if err := plan.Check(); err != nil {
		return controlplane.Replay{}, err
	}
	p := plan.Projection
	ctl, err := c.cfg.Admin.Control(ctx, p.Name)
	if err != nil {
		return controlplane.Replay{}, err
	}
	rec := &controlplane.Replay{ID: newReplayID(), By: req.By, Reason: req.Reason, To: req.Target.String(), Phase: controlplane.ReplayPausing,
		WasPaused: ctl.Paused, Epoch: plan.Epoch, KeepModel: plan.KeepModel, StartedAt: time.Now().UTC()}
	if err := c.cfg.Admin.SetReplay(ctx, p.Name, rec); err != nil {
		return controlplane.Replay{}, err
	}
	req.emit(ReplayEvent{Step: ReplayStarted, Replay: *rec, Group: p.Group, Epoch: plan.Epoch})
	err = c.runReplay(ctx, p, rec, &req)
	return *rec, err
}

// ResumeReplay carries an interrupted replay of req.Projection on from its
// recorded phase, to its recorded target (req.Target is not used). It is
// refused when no replay is interrupted.
func (c *Client) ResumeReplay(ctx context.Context, req ReplayRequest) (controlplane.Replay, error) {
	req.defaults()
	p, err := c.Projection(ctx, req.Projection)
	if err != nil {
		return controlplane.Replay{}, err
	}
	if _, err := c.kafka("a replay"); err != nil {
		return controlplane.Replay{}, err
	}
	if err := p.Writable(); err != nil {
		return controlplane.Replay{}, err
	}
	ctl, err := c.cfg.Admin.Control(ctx, p.Name)
	if err != nil {
		return controlplane.Replay{}, err
	}
	rec := ctl.Replay
	if rec == nil || (rec.Phase != controlplane.ReplayPausing && rec.Phase != controlplane.ReplayResetting) {
		return controlplane.Replay{}, refused("no interrupted replay of %s to resume", p.Name)
	}
	req.emit(ReplayEvent{Step: ReplayResuming, Replay: *rec, Group: p.Group})
	err = c.runReplay(ctx, p, rec, &req)
	return *rec, err
}

// AbortedReplay is what [Client.AbortReplay] did.
type AbortedReplay struct {
	Replay controlplane.Replay // the record, now in phase aborted
	Phase  string              // the phase it was aborted in
	Epoch  uint64              // the projection's epoch
	// EpochRaised: a replay to the start had raised the epoch before the
	// abort: the replicas drop the read model, and partitions whose
	// offsets were not reset to their start stop as state-lost; a new
	// replay rebuilds a consistent read model.
	EpochRaised bool
	// OffsetsPartlyReset: it was aborted while resetting offsets, which
	// may have been reset in part; a new replay rebuilds a consistent
	// read model.
	OffsetsPartlyReset bool
}

// AbortReplay gives up the replay of projection in progress and resumes
// the replicas (unless they were paused before it). It is refused when no
// replay is in progress. A replay to the start that raised the epoch
// cannot be undone (its first step dropped the old epoch's cursors); the
// result says so.
func (c *Client) AbortReplay(ctx context.Context, projection, by string) (AbortedReplay, error) {
	p, err := c.Projection(ctx, projection)
	if err != nil {
		return AbortedReplay{}, err
	}
	if err := p.Writable(); err != nil {
		return AbortedReplay{}, err
	}
	a := c.cfg.Admin
	ctl, err := a.Control(ctx, p.Name)
	if err != nil {
		return AbortedReplay{}, err
	}
	rec := ctl.Replay
	if rec == nil || !ReplayInProgress(rec.Phase) {
		return AbortedReplay{}, refused("no replay of %s to abort", p.Name)
	}
	epoch, err := a.Epoch(ctx, p.Name)
	if err != nil {
		return AbortedReplay{}, err
	}
	raised := epoch > rec.Epoch
	was := rec.Phase
	rec.Phase, rec.Error = controlplane.ReplayAborted, "aborted by "+by+" in phase "+was
	if err := a.SetReplay(ctx, p.Name, rec); err != nil {
		return AbortedReplay{}, err
	}
	if !rec.WasPaused {
		if err := a.SetPaused(ctx, p.Name, false, by, ""); err != nil {
			return AbortedReplay{}, err
		}
	}
	out := AbortedReplay{Replay: *rec, Phase: was, Epoch: epoch}
	switch {
	case was == controlplane.ReplayRebuild:
	case raised && !rec.KeepModel:
		out.EpochRaised = true
	case was == controlplane.ReplayResetting:
		out.OffsetsPartlyReset = true
	}
	return out, nil
}

// runReplay carries a replay on from its recorded phase; each phase is an
// event on the span in ctx.
func (c *Client) runReplay(ctx context.Context, p Projection, rec *controlplane.Replay, req *ReplayRequest) error {
	a := c.cfg.Admin
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("projector.replay.id", rec.ID), attribute.String("projector.replay.to", rec.To))
	defer func() { span.AddEvent("replay " + rec.Phase) }()
	target, err := ParseReplayTarget(rec.To)
	if err != nil {
		return err
	}
	if rec.Phase == controlplane.ReplayPausing {
		if rec.KeepModel {
			if err := a.SetPaused(ctx, p.Name, true, req.By, "replay "+rec.ID); err != nil {
				return err
			}
		} else if err := c.beginReplay(ctx, p, rec, req); err != nil {
			return err
		}
		req.emit(ReplayEvent{Step: ReplayWaitingEmpty, Replay: *rec, Group: p.Group})
		if err := c.WaitEmpty(ctx, p.Group, req.EmptyTimeout); err != nil {
			if !rec.KeepModel {
				// The epoch was raised: the old model's cursors are gone,
				// and only the rest of the replay makes it whole again.
				// The replicas stay paused (writing nothing: every write
				// is refused until the reset).
				rec.Error = err.Error()
				_ = a.SetReplay(context.WithoutCancel(ctx), p.Name, rec)
				return fmt.Errorf("%w; the replay raised the epoch already, so it cannot be given back: the replicas stay paused and nothing is written until it completes: stop the members that do not leave (replicas of an older version ignore the pause) and run replay --resume, or give it up with replay --abort", err)
			}
			c.fail(ctx, p, rec, req.By, err)
			return err
		}
		span.AddEvent("group empty")
		rec.Phase, rec.Error = controlplane.ReplayResetting, ""
		if err := a.SetReplay(ctx, p.Name, rec); err != nil {
			return err
		}
	}
	if rec.Phase == controlplane.ReplayResetting {
		if rec.KeepModel {
			// The group is empty: its committed offsets are final.
			if err := c.refuseForward(ctx, p, target); err != nil {
				c.fail(ctx, p, rec, req.By, err)
				return err
			}
			offsets, err := c.targetOffsets(ctx, target)
			if err == nil {
				err = c.commitWhenEmpty(ctx, p.Group, offsets, req.EmptyTimeout)
			}
			if err != nil {
				return fmt.Errorf("%w (the replicas stay paused: run replay --resume to retry, or --abort)", err)
			}
			epoch, err := a.Epoch(ctx, p.Name)
			if err != nil {
				return err
			}
			rec.Phase = controlplane.ReplayRebuild
			if err := a.SetReplay(ctx, p.Name, rec); err != nil {
				return err
			}
			req.emit(ReplayEvent{Step: ReplayOffsetsReset, Replay: *rec, Group: p.Group, Epoch: epoch})
		} else if err := c.resetToStart(ctx, p, rec, req); err != nil {
			return err
		}
	}
	if !rec.WasPaused {
		if err := a.SetPaused(ctx, p.Name, false, req.By, ""); err != nil {
			return err
		}
		req.emit(ReplayEvent{Step: ReplayResumed, Replay: *rec, Group: p.Group, Epoch: rec.Epoch})
	} else {
		req.emit(ReplayEvent{Step: ReplayStaysPaused, Replay: *rec, Group: p.Group, Epoch: rec.Epoch})
	}
	if req.Wait && !rec.WasPaused {
		if err := c.follow(ctx, p, rec, req); err != nil {
			return err
		}
	}
	rec.Phase = controlplane.ReplayDone
	return a.SetReplay(context.WithoutCancel(ctx), p.Name, rec)
}

// fail records a replay that stopped before resetting anything as failed
// and resumes the replicas unless they were paused before it.
func (c *Client) fail(ctx context.Context, p Projection, rec *controlplane.Replay, by string, err error) {
	rec.Phase, rec.Error = controlplane.ReplayFailed, err.Error()
	if !rec.WasPaused {
		_ = c.cfg.Admin.SetPaused(context.WithoutCancel(ctx), p.Name, false, by, "")
	}
	_ = c.cfg.Admin.SetReplay(context.WithoutCancel(ctx), p.Name, rec)
}

// beginReplay is the first step of a replay to the start: the start
// offsets are listed and recorded with the replay, then one step pauses
// the replicas, raises the epoch (clearing cursors, heads, progress and
// parks; the start offsets become the new epoch's progress) and requests
// the reset of the read model. From then on every write is refused until
// the reset is done: a replica flushing on its way out, or joining late
// with what it read before, stores and commits nothing. A resumed replay
// calls it again: the epoch is raised only while it is still the one the
// replay started from (rec.Epoch), and the recorded start offsets are
// reused.
func (c *Client) beginReplay(ctx context.Context, p Projection, rec *controlplane.Replay, req *ReplayRequest) error {
	a := c.cfg.Admin
	if rec.Start == nil {
		offsets, err := c.targetOffsets(ctx, FromStart())
		if err != nil {
			return err
		}
		start := map[int32]int64{}
		offsets.Each(func(o kadm.Offset) { start[o.Partition] = o.At })
		rec.Start = start
		if err := a.SetReplay(ctx, p.Name, rec); err != nil {
			return err
		}
	}
	begun, err := a.BeginReplay(ctx, p.Name, rec.Epoch, req.By, "replay "+rec.ID, rec.Start)
	if err != nil {
		return err
	}
	if !begun.Raised {
		req.emit(ReplayEvent{Step: ReplayEpochWasRaised, Replay: *rec, Group: p.Group, Epoch: begun.Epoch, From: rec.Epoch})
		return nil
	}
	trace.SpanFromContext(ctx).AddEvent("epoch raised", trace.WithAttributes(attribute.Int64("projector.epoch", int64(begun.Epoch))))
	req.emit(ReplayEvent{Step: ReplayEpochRaised, Replay: *rec, Group: p.Group, Epoch: begun.Epoch, From: rec.Epoch, Cleared: begun.Cleared})
	return nil
}

// resetToStart is the rest of a replay to the start once the group is
// empty: the offsets go to the recorded start offsets, and the replay moves
// on to its rebuild. A replay interrupted before its first step (or one
// recorded by an older projectorctl, which raised the epoch only now) has
// it made first: the replicas are paused and out of the group already.
func (c *Client) resetToStart(ctx context.Context, p Projection, rec *controlplane.Replay, req *ReplayRequest) error {
	a := c.cfg.Admin
	epoch, err := a.Epoch(ctx, p.Name)
	if err != nil {
		return err
	}
	if epoch <= rec.Epoch || rec.Start == nil {
		if err := c.beginReplay(ctx, p, rec, req); err != nil {
			return err
		}
		if epoch, err = a.Epoch(ctx, p.Name); err != nil {
			return err
		}
	}
	offsets := kadm.Offsets{}
	for part, at := range rec.Start {
		offsets.Add(kadm.Offset{Topic: c.cfg.Topic, Partition: part, At: at, LeaderEpoch: -1})
	}
	if err := c.commitWhenEmpty(ctx, p.Group, offsets, req.EmptyTimeout); err != nil {
		return fmt.Errorf("%w (the replicas stay paused: run replay --resume to retry, or --abort)", err)
	}
	// BeginReplay requested the reset; a replay recorded by an older
	// projectorctl may not have (raising it again changes nothing).
	if err := a.RequestReset(ctx, p.Name, epoch); err != nil {
		return err
	}
	rec.Epoch, rec.Phase = epoch, controlplane.ReplayRebuild
	if err := a.SetReplay(ctx, p.Name, rec); err != nil {
		return err
	}
	trace.SpanFromContext(ctx).AddEvent("offsets reset", trace.WithAttributes(attribute.Int64("projector.epoch", int64(epoch))))
	req.emit(ReplayEvent{Step: ReplayOffsetsReset, Replay: *rec, Group: p.Group, Epoch: epoch})
	return nil
}

// follow follows the rebuild until the read model was reset, the replicas
// rejoined, and the committed offsets reached the end of the topic as it
// was when the replicas resumed (events that keep arriving are live lag,
// not rebuild).
func (c *Client) follow(ctx context.Context, p Projection, rec *controlplane.Replay, req *ReplayRequest) error {
	adm := c.cfg.Kafka
	topic := c.cfg.Topic
	deadline := time.Now().Add(req.WaitTimeout)
	target, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	start, err := c.status(ctx, p)
	if err != nil {
		return err
	}
	var total int64
	from := map[int32]int64{}
	for _, pl := range start.Partitions {
		end, _ := target.Lookup(topic, pl.Partition)
		from[pl.Partition] = max(pl.Committed, 0)
		total += max(end.Offset-from[pl.Partition], 0)
	}
	req.emit(ReplayEvent{Step: ReplayProgress, Replay: *rec, Group: p.Group, Total: total})
	for {
		st, err := c.status(ctx, p)
		if err != nil {
			return err
		}
		var done, behind int64
		for _, pl := range st.Partitions {
			end, _ := target.Lookup(topic, pl.Partition)
			at := max(pl.Committed, from[pl.Partition])
			done += min(at, end.Offset) - from[pl.Partition]
			behind += max(end.Offset-at, 0)
		}
		req.emit(ReplayEvent{Step: ReplayProgress, Replay: *rec, Group: p.Group, Done: done, Total: total})
		reset := rec.KeepModel || st.Control.ResetDone >= rec.Epoch
		if reset && len(st.Members) > 0 && behind == 0 {
			req.emit(ReplayEvent{Step: ReplayCaughtUp, Replay: *rec, Group: p.Group, Epoch: rec.Epoch, Done: done, Total: total, Lag: st.TotalLag, Parked: st.Parked})
			// Every park of the old epoch was cleared: a stream parked
			// now stopped in the rebuild, and the model lacks its events.
			if len(st.Parked) > 0 {
				ids := make([]string, 0, len(st.Parked))
				for _, pk := range st.Parked {
					ids = append(ids, fmt.Sprintf("%s at sequence %d (%s)", pk.StreamID, pk.Sequence, pk.Reason))
				}
				return fmt.Errorf("the rebuild of %s caught up with the topic, but %d stream(s) parked during it and are incomplete in the read model: %s (see parked list)",
					p.Name, len(st.Parked), strings.Join(ids, "; "))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the rebuild of %s did not catch up within %s (%d records behind, read model reset: %v)", p.Name, req.WaitTimeout, behind, reset)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// commitWhenEmpty commits offsets for the group once it is empty. A
// replica that read the control state just before the replay paused the
// replicas can join after the group was found empty (it leaves again at
// its first write, refused, or its next read of the control state): the
// broker then refuses the commit whole, and it is tried again once the
// group is empty, within timeout.
func (c *Client) commitWhenEmpty(ctx context.Context, group string, offsets kadm.Offsets, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.commitOffsets(ctx, group, offsets)
		notEmpty := errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) ||
			errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.NonEmptyGroup)
		left := time.Until(deadline)
		if !notEmpty || left <= 0 {
			return err
		}
		if err := c.WaitEmpty(ctx, group, left); err != nil {
			return fmt.Errorf("%w (after a member joined the group as its offsets were reset)", err)
		}
	}
}

// commitOffsets commits offsets for the (empty) group.
func (c *Client) commitOffsets(ctx context.Context, group string, offsets kadm.Offsets) error {
	resp, err := c.cfg.Kafka.CommitOffsets(ctx, group, offsets)
	if err != nil {
		return fmt.Errorf("reset offsets of %s: %w", group, err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("reset offsets of %s (the group must be empty): %w", group, err)
	}
	return nil
}

// targetOffsets computes where a replay to t puts each partition.
func (c *Client) targetOffsets(ctx context.Context, t ReplayTarget) (kadm.Offsets, error) {
	topic := c.cfg.Topic
	adm := c.cfg.Kafka
	switch t.kind {
	case targetTime:
		listed, err := adm.ListOffsetsAfterMilli(ctx, t.at.UnixMilli(), topic)
		if err != nil {
			return nil, fmt.Errorf("offsets of %s at %s: %w", topic, t.at, err)
		}
		return listed.Offsets(), nil
	case targetOffsets:
		offsets := kadm.Offsets{}
		for _, part := range slices.Sorted(maps.Keys(t.offsets)) {
			offsets.Add(kadm.Offset{Topic: topic, Partition: part, At: t.offsets[part], LeaderEpoch: -1})
		}
		return offsets, nil
	}
	listed, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	return listed.Offsets(), nil
}

// refuseForward refuses a replay that keeps the model but would move a
// partition's offset forward, past events the group has not processed:
// those events would never be applied.
func (c *Client) refuseForward(ctx context.Context, p Projection, t ReplayTarget) error {
	target, err := c.targetOffsets(ctx, t)
	if err != nil {
		return err
	}
	committed, err := c.committedOffsets(ctx, p.Group)
	if err != nil {
		return err
	}
	starts, err := c.cfg.Kafka.ListStartOffsets(ctx, c.cfg.Topic)
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", c.cfg.Topic, err)
	}
	var ahead []string
	for _, o := range target.Sorted() {
		cur := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			cur = s.Offset
		}
		if got, ok := committed.Lookup(o.Topic, o.Partition); ok && got.At >= 0 {
			cur = got.At
		}
		if o.At > cur {
			ahead = append(ahead, fmt.Sprintf("partition %d: %d > %d", o.Partition, o.At, cur))
		}
	}
	if len(ahead) > 0 {
		return refused("replay of %s to %s would move offsets forward, past events the group has not processed (%s): they would never be applied; a replay to a time or offsets only re-delivers (replay to the start to rebuild)",
			p.Name, t, strings.Join(ahead, "; "))
	}
	return nil
}

// committedOffsets fetches the group's committed offsets.
func (c *Client) committedOffsets(ctx context.Context, group string) (kadm.OffsetResponses, error) {
	committed, err := c.cfg.Kafka.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return kadm.OffsetResponses{}, nil // not created yet: nothing committed
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	return committed, nil
}

// TruncatedPartitions names the partitions whose first offset is above 0
// ("partition 2 starts at 120"): their earlier events were deleted.
func TruncatedPartitions(starts kadm.ListedOffsets) string {
	var out []string
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			out = append(out, fmt.Sprintf("partition %d starts at %d", o.Partition, o.Offset))
		}
	})
	slices.Sort(out)
	return strings.Join(out, ", ")
}
