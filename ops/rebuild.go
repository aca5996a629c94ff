package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Rebuilds take the projection's name ("billing"), not a version: they act
// on its registry of versions, with the groups of Config.Group (or the
// name) versioned by framework.VersionGroup.

// RebuildPlan is what a rebuild would do, as [Client.PlanRebuild] found it.
type RebuildPlan struct {
	Projection string
	Topic      string
	Versions   controlplane.Versions
	// Live and LiveGroup are the live version's name and group; Next,
	// NextName and NextGroup the version the rebuild would build.
	Live      string
	LiveGroup string
	Next      uint64
	NextName  string
	NextGroup string
	// Records is how many records the new version reads.
	Records int64
	// Truncated names the partitions that no longer start at offset 0
	// ([TruncatedPartitions]); empty if none.
	Truncated string
	// Replicas is how many replicas of the live version report now.
	Replicas int
	// Building is the rebuild in progress, if any: [Client.PlanRebuild]
	// returns it with the plan only when asked to follow it.
	Building *controlplane.Rebuild
}

// PlanRebuild plans a rebuild of projection and changes nothing. While a
// rebuild is in progress it refuses, unless follow is set: then the plan
// holds it in Building (to follow it). It refuses while a replay of the
// live version is in progress, unless dryRun.
func (c *Client) PlanRebuild(ctx context.Context, projection string, follow, dryRun bool) (RebuildPlan, error) {
	adm, err := c.kafka("a rebuild")
	if err != nil {
		return RebuildPlan{}, err
	}
	a := c.cfg.Admin
	vs, err := a.Versions(ctx, projection)
	if err != nil {
		return RebuildPlan{}, err
	}
	group := c.baseGroup(projection)
	plan := RebuildPlan{Projection: projection, Topic: c.cfg.Topic, Versions: vs,
		Live: framework.VersionedName(projection, vs.Live), LiveGroup: framework.VersionGroup(group, vs.Live),
		Next: vs.Last + 1}
	plan.NextName, plan.NextGroup = framework.VersionedName(projection, plan.Next), framework.VersionGroup(group, plan.Next)
	if b := vs.Building; b != nil && follow && !dryRun {
		plan.Building = b
		return plan, nil
	}
	if b := vs.Building; b != nil {
		return RebuildPlan{}, refused("a rebuild of %s to v%d is in progress since %s (by %s): follow it with rebuild --status, or give it up with --abort",
			projection, b.Version, b.StartedAt.Format(time.RFC3339), b.By)
	}
	if ctl, err := a.Control(ctx, plan.Live); err != nil {
		return RebuildPlan{}, err
	} else if r := ctl.Replay; r != nil && ReplayInProgress(r.Phase) && !dryRun {
		return RebuildPlan{}, refused("replay %s of %s is in progress (phase %s, by %s): finish it (replay %s --resume) or give it up (--abort) before a rebuild",
			r.ID, plan.Live, r.Phase, r.By, projection)
	}
	ends, err := adm.ListEndOffsets(ctx, c.cfg.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return RebuildPlan{}, fmt.Errorf("end offsets of %s: %w", c.cfg.Topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, c.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return RebuildPlan{}, fmt.Errorf("start offsets of %s: %w", c.cfg.Topic, err)
	}
	for _, e := range ends.Offsets().Sorted() {
		s, _ := starts.Lookup(c.cfg.Topic, e.Partition)
		plan.Records += e.At - s.Offset
	}
	plan.Truncated = TruncatedPartitions(starts)
	replicas, err := a.Replicas(ctx, plan.Live, c.cfg.ReplicaStaleAfter)
	if err != nil {
		return RebuildPlan{}, err
	}
	plan.Replicas = len(replicas)
	return plan, nil
}

// RebuildRequest asks for a rebuild of a projection beside its live
// version.
type RebuildRequest struct {
	Projection string
	By, Reason string
	// Grace is how long the replaced version is kept after the switch
	// (queries that started on it finish); it must be positive.
	Grace time.Duration
	// Keep keeps the replaced version until [Client.DropVersion].
	Keep bool
}

// StartRebuild records a rebuild: the replicas (kafkarunner.VersionedRunner)
// build the next version beside the live one and switch the live pointer
// to it once it has caught up. It is refused while a rebuild or a replay
// of the live version is in progress.
func (c *Client) StartRebuild(ctx context.Context, req RebuildRequest) (controlplane.Rebuild, error) {
	if req.Grace <= 0 {
		return controlplane.Rebuild{}, invalid("rebuild grace %s: the replaced version must outlive the queries that resolved it just before the switch; give a positive duration", req.Grace)
	}
	a := c.cfg.Admin
	r, err := a.StartRebuild(ctx, req.Projection, controlplane.Rebuild{By: req.By, Reason: req.Reason, Grace: req.Grace, Keep: req.Keep})
	if err != nil {
		// The store refuses atomically what PlanRebuild checked before
		// (a rebuild or replay that started meanwhile): tell a refusal
		// from a failure by what the registry shows now.
		if vs, verr := a.Versions(ctx, req.Projection); verr == nil {
			if vs.Building != nil {
				return controlplane.Rebuild{}, &Error{Kind: ErrRefused, Err: err}
			}
			if ctl, cerr := a.Control(ctx, framework.VersionedName(req.Projection, vs.Live)); cerr == nil && ctl.Replay != nil && ReplayInProgress(ctl.Replay.Phase) {
				return controlplane.Rebuild{}, &Error{Kind: ErrRefused, Err: err}
			}
		}
		return controlplane.Rebuild{}, err
	}
	return r, nil
}

// RebuildStep names a step of [Client.FollowRebuild].
type RebuildStep string

// Steps of following a rebuild.
const (
	RebuildProgress RebuildStep = "progress" // Done of Total records
	// RebuildBlocked: the rebuild caught up but does not switch (Blocked
	// says why, as a replica last saw it); reported when it changes.
	RebuildBlocked RebuildStep = "blocked"
	// RebuildNoReplica: no replica reports for the version a minute after
	// the rebuild started: do the workers run every version?
	RebuildNoReplica RebuildStep = "no-replica"
	// RebuildRetrying: looking at the rebuild failed (Err); it goes on in
	// the replicas, and is looked at again.
	RebuildRetrying RebuildStep = "retrying"
	RebuildEnded    RebuildStep = "ended" // switched, or ended otherwise (the follow then fails)
)

// RebuildEvent is a step of following a rebuild.
type RebuildEvent struct {
	Step    RebuildStep
	Name    string // the version being built
	Done    int64
	Total   int64
	Blocked string
	Err     error
}

// RebuildSwitched is a rebuild that switched the live pointer.
type RebuildSwitched struct {
	Name     string                // the version now live
	Versions controlplane.Versions // the registry after the switch
	Lag      int64                 // the new live version's lag at the switch
	Replaced *controlplane.Retiring
}

// FollowRebuild follows rebuild r of projection until the live pointer
// switched to it, reporting progress through onEvent (may be nil). It
// fails when the rebuild ended otherwise, or did not switch within
// timeout (naming what blocks it).
func (c *Client) FollowRebuild(ctx context.Context, projection string, r controlplane.Rebuild, timeout time.Duration, onEvent func(RebuildEvent)) (RebuildSwitched, error) {
	emit := func(e RebuildEvent) {
		if onEvent != nil {
			onEvent(e)
		}
	}
	adm, err := c.kafka("following a rebuild")
	if err != nil {
		return RebuildSwitched{}, err
	}
	a := c.cfg.Admin
	deadline := time.Now().Add(timeout)
	group := framework.VersionGroup(c.baseGroup(projection), r.Version)
	name := framework.VersionedName(projection, r.Version)
	start, err := GroupLag(ctx, adm, c.cfg.Topic, group)
	if err != nil {
		return RebuildSwitched{}, err
	}
	total := start.Total
	emit(RebuildEvent{Step: RebuildProgress, Name: name, Total: total})
	lastBlocked := ""
	seenReplica, warned := false, false
	for {
		vs, err := a.Versions(ctx, projection)
		var behind int64
		if err == nil {
			var l Lag
			l, err = GroupLag(ctx, adm, c.cfg.Topic, group)
			behind = l.Total
		}
		if err != nil {
			// A busy store or broker: the rebuild goes on in the
			// replicas; look again until the deadline.
			if time.Now().After(deadline) {
				return RebuildSwitched{}, fmt.Errorf("following the rebuild to %s: %w", name, err)
			}
			emit(RebuildEvent{Step: RebuildRetrying, Name: name, Err: err})
			if err := sleep(ctx, 2*time.Second); err != nil {
				return RebuildSwitched{}, err
			}
			continue
		}
		emit(RebuildEvent{Step: RebuildProgress, Name: name, Done: max(total-behind, 0), Total: total})
		switch {
		case vs.Live == r.Version:
			emit(RebuildEvent{Step: RebuildEnded, Name: name, Done: max(total-behind, 0), Total: total})
			out := RebuildSwitched{Name: name, Versions: vs, Lag: behind}
			for _, rt := range vs.Retiring {
				if rt.Version == vs.SwitchedFrom {
					out.Replaced = &rt
				}
			}
			return out, nil
		case vs.Building == nil || vs.Building.Version != r.Version:
			emit(RebuildEvent{Step: RebuildEnded, Name: name, Done: max(total-behind, 0), Total: total})
			outcome := "ended"
			for _, h := range vs.History {
				if h.Version == r.Version {
					outcome = h.Outcome
				}
			}
			return RebuildSwitched{}, fmt.Errorf("the rebuild to %s %s without switching; %s stays live", name, outcome, framework.VersionedName(projection, vs.Live))
		}
		if b := vs.Building.Blocked; b != "" && b != lastBlocked {
			lastBlocked = b
			emit(RebuildEvent{Step: RebuildBlocked, Name: name, Blocked: b})
		}
		if !seenReplica && !warned {
			if reps, err := a.Replicas(ctx, name, c.cfg.ReplicaStaleAfter); err == nil && len(reps) > 0 {
				seenReplica = true
			} else if time.Since(r.StartedAt) > time.Minute {
				warned = true
				emit(RebuildEvent{Step: RebuildNoReplica, Name: name})
			}
		}
		if time.Now().After(deadline) {
			emit(RebuildEvent{Step: RebuildEnded, Name: name, Done: max(total-behind, 0), Total: total})
			if lastBlocked != "" {
				return RebuildSwitched{}, fmt.Errorf("the rebuild to %s caught up but did not switch within %s: %s", name, timeout, lastBlocked)
			}
			return RebuildSwitched{}, fmt.Errorf("the rebuild to %s did not catch up within %s (%d record(s) behind); it goes on: follow it with rebuild --status, or --abort", name, timeout, behind)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return RebuildSwitched{}, err
		}
	}
}

// RebuildStatus is the registry of a projection's versions with the
// rebuild in progress, also as JSON (projectorctl rebuild --status).
type RebuildStatus struct {
	Projection string `json:"projection"`
	Live       string `json:"live"`
	LiveGroup  string `json:"live_group"`
	controlplane.Versions
	Rebuilding *Rebuilding `json:"rebuilding,omitempty"`
}

// Rebuilding is a rebuild in progress: its version's name and group, and
// how many records it is behind the topic.
type Rebuilding struct {
	controlplane.Rebuild
	Name   string `json:"name"`
	Group  string `json:"group"`
	Behind int64  `json:"behind"`
}

// RebuildStatus returns projection's versions and the rebuild in progress.
func (c *Client) RebuildStatus(ctx context.Context, projection string) (RebuildStatus, error) {
	vs, err := c.cfg.Admin.Versions(ctx, projection)
	if err != nil {
		return RebuildStatus{}, err
	}
	group := c.baseGroup(projection)
	out := RebuildStatus{Projection: projection, Live: framework.VersionedName(projection, vs.Live), LiveGroup: framework.VersionGroup(group, vs.Live), Versions: vs}
	if b := vs.Building; b != nil {
		adm, err := c.kafka("a rebuild's status")
		if err != nil {
			return RebuildStatus{}, err
		}
		bg := framework.VersionGroup(group, b.Version)
		l, err := GroupLag(ctx, adm, c.cfg.Topic, bg)
		if err != nil {
			return RebuildStatus{}, err
		}
		out.Rebuilding = &Rebuilding{Rebuild: *b, Name: framework.VersionedName(projection, b.Version), Group: bg, Behind: l.Total}
	}
	return out, nil
}

// AbortRebuild gives up the rebuild of projection in progress: the
// replicas stop it and delete its keys and group; the live version is
// untouched. It returns the aborted rebuild and the registry after the
// abort, and is refused when no rebuild is in progress.
func (c *Client) AbortRebuild(ctx context.Context, projection, by string) (controlplane.Rebuild, controlplane.Versions, error) {
	a := c.cfg.Admin
	noRebuild := func(vs controlplane.Versions) error {
		if len(vs.History) > 0 && time.Since(vs.History[0].EndedAt) < time.Hour {
			h := vs.History[0]
			return refused("no rebuild of %s to abort: the last one, to v%d, ended at %s (%s); %s is live", projection, h.Version,
				h.EndedAt.Format(time.RFC3339), h.Outcome, framework.VersionedName(projection, vs.Live))
		}
		return refused("no rebuild of %s to abort", projection)
	}
	vs, err := a.Versions(ctx, projection)
	if err != nil {
		return controlplane.Rebuild{}, vs, err
	}
	if vs.Building == nil {
		return controlplane.Rebuild{}, vs, noRebuild(vs)
	}
	r, err := a.AbortRebuild(ctx, projection, by)
	if err != nil {
		// Ended meanwhile (switched, aborted by someone else)?
		if vs, verr := a.Versions(ctx, projection); verr == nil && vs.Building == nil {
			return controlplane.Rebuild{}, vs, noRebuild(vs)
		}
		return controlplane.Rebuild{}, vs, err
	}
	vs, err = a.Versions(ctx, projection)
	return r, vs, err
}

// DropVersion makes a retired version of projection (also one kept) due
// for deletion now: the replicas delete its keys and consumer group. It is
// refused for a version that is not retiring.
func (c *Client) DropVersion(ctx context.Context, projection string, version uint64) error {
	if err := c.cfg.Admin.RetireNow(ctx, projection, version); err != nil {
		return &Error{Kind: ErrRefused, Err: err}
	}
	return nil
}

// VersionGroup returns the consumer group of version v of projection.
func (c *Client) VersionGroup(projection string, v uint64) string {
	return framework.VersionGroup(c.baseGroup(projection), v)
}
