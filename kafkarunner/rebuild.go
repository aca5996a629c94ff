package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// The rebuild of a new read-model version beside the live one: each
// replica checks whether it caught up and nothing blocks the switch,
// switches the live pointer, and retires replaced versions.

// rebuildCheck is what a replica saw at its last check of a rebuild.
type rebuildCheck struct {
	at time.Time
	// ends are the topic's last stable offsets; near whether the new
	// version had reached the previous check's ends (or the live
	// group's offsets).
	ends map[int32]int64
	near bool
	// live is the live version's cursors, read before ends (only while
	// near): the new version must hold at least these before the switch.
	live *framework.GlobalProjectionCheckpoint
	// skip counts checks left without reading the live cursors after a
	// comparison found the new version short (a blocked rebuild).
	skip int
}

// checkRebuild switches the live pointer to the rebuilt version once it has
// caught up, holds everything the live version held, and nothing blocks it.
//
// Caught up: on every partition the new group's committed offset has
// reached the topic's last stable offset of this replica's previous check
// (at most three refreshes old: a replica frozen in between starts
// over), or the live group's committed offset if that is lower (a
// partition ending in a transaction marker, a live version that lags). Then
// the new version's cursors are compared with the live version's as they
// were at the previous check, read before its end offsets: every stream the
// live version had must be in the new version at least as far. A stream
// missing (its events deleted from the topic by retention) or behind (parked
// or held earlier in the new version) blocks the switch and is named.
func (v *VersionedRunner) checkRebuild(ctx context.Context, vs controlplane.Versions) {
	log := v.cfg.Runner.Logger
	b := vs.Building
	name := framework.VersionedName(v.cfg.Name, b.Version)
	liveName := framework.VersionedName(v.cfg.Name, vs.Live)
	block := func(reason string) {
		v.setStatus(reason)
		if b.Blocked != reason {
			if err := v.cfg.Versions.UpdateRebuild(ctx, v.cfg.Name, b.Version, reason, true); err != nil {
				log.WarnContext(ctx, "cannot record why the rebuild waits", "projection", name, "err", err)
			}
			log.WarnContext(ctx, "the rebuild caught up but does not switch: "+reason, "projection", name)
		}
	}
	v.mu.Lock()
	prev := v.checks[b.Version]
	v.mu.Unlock()
	if prev != nil && time.Since(prev.at) > 3*v.cfg.Refresh {
		prev = nil // too old to vouch for "one refresh ago"
	}
	cur := &rebuildCheck{at: time.Now()}
	if prev != nil && prev.skip > 0 {
		cur.skip = prev.skip - 1
	}
	if prev != nil && prev.near && cur.skip == 0 {
		cp, err := v.loadCursors(ctx, liveName)
		if err != nil {
			log.WarnContext(ctx, "cannot read the live version's cursors", "projection", liveName, "err", err)
			return
		}
		cur.live = cp
	}
	near, behind, ends, err := v.caughtUp(ctx, vs.Live, b.Version, prev)
	if err != nil {
		log.WarnContext(ctx, "cannot check the rebuild's progress", "projection", name, "err", err)
		return
	}
	cur.ends, cur.near = ends, near
	v.mu.Lock()
	v.checks[b.Version] = cur
	v.mu.Unlock()
	if !near || prev == nil || prev.live == nil {
		v.setStatus(fmt.Sprintf("%s is %d record(s) behind the topic", name, behind))
		return
	}
	blocked, err := v.newlyParked(ctx, vs.Live, b.Version)
	if err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's parked streams", "projection", name, "err", err)
		return
	}
	if blocked != "" {
		block(blocked)
		return
	}
	if short, err := v.shortOf(ctx, name, prev.live); err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's cursors with the live version's", "projection", name, "err", err)
		return
	} else if short != "" {
		cur.skip = 10
		block(short)
		return
	}
	if c, ok := v.control(); ok {
		ctl, err := c.Control(ctx, liveName)
		if err != nil {
			log.WarnContext(ctx, "cannot read the live version's control state", "projection", liveName, "err", err)
			return
		}
		if ctl.Paused {
			block(fmt.Sprintf("the live version %s is paused (by %s: %s): the switch waits until it is resumed", liveName, ctl.PausedBy, ctl.PauseReason))
			return
		}
		if r := ctl.Replay; r != nil && (r.Phase == controlplane.ReplayPausing || r.Phase == controlplane.ReplayResetting || r.Phase == controlplane.ReplayRebuild) {
			block(fmt.Sprintf("a replay of the live version %s is in progress (%s, phase %s): the switch waits for it", liveName, r.ID, r.Phase))
			return
		}
	}
	if switched, behind := v.trySwitch(ctx, b.Version, name, liveName); switched || !behind {
		return
	}
	// A moment behind: the live version applied more since the last
	// comparison. Under a steady write load that can be so at every check;
	// then the live version is held for a moment.
	if fr, ok := v.cfg.Versions.(LiveFreezer); ok {
		v.mu.Lock()
		due := time.Since(v.lastFreeze) >= freezeEvery && (b.FrozenAt.IsZero() || time.Since(b.FrozenAt) >= freezeEvery)
		v.mu.Unlock()
		if due {
			v.freezeAndSwitch(ctx, fr, vs, name, liveName)
		}
	}
}

// trySwitch switches the live pointer to the rebuilt version if it holds
// what the live one holds now. Right before the switch the new version
// must hold what the live one holds now, not only what it held at the
// previous check: the live version applied more since, and a reader must
// not see the model go back at the switch. Short by a moment (behind):
// the next check tries again. The read here only spares a switch attempt
// that would be refused: the store's SwitchLive compares the cursors
// again in the switch's own transaction, which closes the live version
// (ErrSwitchBehind).
func (v *VersionedRunner) trySwitch(ctx context.Context, version uint64, name, liveName string) (switched, behind bool) {
	log := v.cfg.Runner.Logger
	now, err := v.loadCursors(ctx, liveName)
	if err != nil {
		log.WarnContext(ctx, "cannot read the live version's cursors", "projection", liveName, "err", err)
		return false, false
	}
	if short, err := v.shortOf(ctx, name, now); err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's cursors with the live version's", "projection", name, "err", err)
		return false, false
	} else if short != "" {
		v.setStatus(fmt.Sprintf("%s is a moment behind the live version %s: the switch waits for the next check", name, liveName))
		return false, true
	}
	if hook := beforeSwitch.Load(); hook != nil {
		(*hook)()
	}
	if _, err := v.cfg.Versions.SwitchLive(ctx, v.cfg.Name, version, v.cfg.Runner.ReplicaID); errors.Is(err, controlplane.ErrSwitchBehind) {
		v.setStatus(fmt.Sprintf("%s is a moment behind the live version %s: the switch waits for the next check", name, liveName))
		log.DebugContext(ctx, "the switch waits: the rebuilt version was behind at the switch", "projection", name, "err", err)
		return false, true
	} else if err != nil {
		log.InfoContext(ctx, "the switch to the rebuilt version did not happen here (another replica may have made it)", "projection", name, "err", err)
		return false, false
	}
	log.InfoContext(ctx, "switched the live read model to the rebuilt version", "projection", name, "from", liveName)
	v.setStatus("")
	return true, false
}

// freezeFor is how long a replica freezes the live version for the
// switch; freezeEvery how often at most. Readers see a model that stands
// still for up to freezeFor (plus a refresh) at most once per freezeEvery.
// Variables for tests.
var (
	freezeFor   = 5 * time.Second
	freezeEvery = 30 * time.Second
	// freezeCap bounds, by a replica's own clock, how long it honours one
	// freeze: a FrozenUntil far ahead (a skewed clock) cannot stop the
	// live version for longer.
	freezeCap = 15 * time.Second
)

// freezeAndSwitch asks every replica to hold the live version's writes for
// freezeFor, and tries to switch while they do: the rebuilt version goes on
// applying and catches up with a live model that stands still. Safety does
// not depend on the hold (a replica that has not seen it yet, or a batch
// applied as it began, only makes SwitchLive refuse once more): the switch
// compares the cursors in its own transaction. What could go wrong and
// why it does not:
//   - this replica dies while the live version is held: the freeze ends at
//     FrozenUntil by itself, and every replica caps it by its own clock;
//   - the rebuild is aborted, or another replica switches, meanwhile: the
//     registry has no freeze any more, and replicas stop holding at their
//     next refresh (the replaced version's runner is stopped anyway);
//   - the new version parks a stream, or the live one is paused or
//     replayed, meanwhile: checked before every attempt; the freeze ends.
func (v *VersionedRunner) freezeAndSwitch(ctx context.Context, fr LiveFreezer, vs controlplane.Versions, name, liveName string) {
	log := v.cfg.Runner.Logger
	version := vs.Building.Version
	start := time.Now()
	until := start.Add(freezeFor)
	v.mu.Lock()
	v.lastFreeze = start
	live := v.liveRun
	v.mu.Unlock()
	if err := fr.FreezeLive(ctx, v.cfg.Name, version, until, v.cfg.Runner.ReplicaID); err != nil {
		log.WarnContext(ctx, "cannot hold the live version's writes for the switch", "projection", liveName, "err", err)
		return
	}
	if live != nil {
		live.holdWrites(until)
	}
	v.setStatus(fmt.Sprintf("%s keeps being a moment behind the live version %s: holding the live version's writes for up to %v to switch", name, liveName, freezeFor))
	log.InfoContext(ctx, "holding the live version's writes for the switch to the rebuilt version", "projection", name, "live", liveName, "for", freezeFor)
	switched := false
	defer func() {
		if switched {
			return
		}
		if live != nil {
			live.holdWrites(time.Time{})
		}
		// It would end at until anyway.
		if err := fr.FreezeLive(context.WithoutCancel(ctx), v.cfg.Name, version, time.Time{}, v.cfg.Runner.ReplicaID); err != nil {
			log.DebugContext(ctx, "cannot end the hold of the live version's writes; it ends by itself", "projection", liveName, "err", err)
		}
	}()
	// The other replicas see the freeze at their next refresh; a first
	// attempt is made within the freeze however long the refresh is.
	wait := min(v.cfg.Refresh, freezeFor/4)
	for attempt := 0; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if attempt > 0 && !time.Now().Before(until) {
			v.setStatus(fmt.Sprintf("%s did not catch up with the live version %s within the %v it was held; the switch tries again later", name, liveName, freezeFor))
			log.InfoContext(ctx, "the rebuilt version did not catch up while the live version was held; trying again later", "projection", name, "held", time.Since(start).Round(time.Millisecond))
			return
		}
		wait = min(v.cfg.Refresh, 200*time.Millisecond, freezeFor/4)
		cur, err := v.cfg.Versions.Versions(ctx, v.cfg.Name)
		if err != nil || cur.Building == nil || cur.Building.Version != version || cur.Live != vs.Live {
			return // the rebuild ended meanwhile (aborted, or switched by another replica)
		}
		if reason, err := v.switchBlocked(ctx, cur.Live, version, liveName); err != nil || reason != "" {
			return
		}
		var behind bool
		if switched, behind = v.trySwitch(ctx, version, name, liveName); switched || !behind {
			if switched {
				log.InfoContext(ctx, "switched while the live version's writes were held", "projection", name, "held", time.Since(start).Round(time.Millisecond))
			}
			return
		}
	}
}

// switchBlocked says why the switch must not happen now (a stream parked in
// the new version only; the live version paused or being replayed), or "".
func (v *VersionedRunner) switchBlocked(ctx context.Context, live, version uint64, liveName string) (string, error) {
	if blocked, err := v.newlyParked(ctx, live, version); err != nil || blocked != "" {
		return blocked, err
	}
	c, ok := v.control()
	if !ok {
		return "", nil
	}
	ctl, err := c.Control(ctx, liveName)
	if err != nil {
		return "", err
	}
	if ctl.Paused {
		return "paused", nil
	}
	if r := ctl.Replay; r != nil && (r.Phase == controlplane.ReplayPausing || r.Phase == controlplane.ReplayResetting || r.Phase == controlplane.ReplayRebuild) {
		return "replay", nil
	}
	return "", nil
}

// honourFreeze holds the live version's writes while the rebuild b asks
// for it, capped by this replica's own clock, and lets them go when it no
// longer does. v.mu must be held.
func (v *VersionedRunner) honourFreeze(b *controlplane.Rebuild) {
	now := time.Now()
	if !b.Frozen(now) {
		if !v.freezeSeen.IsZero() && v.liveRun != nil {
			v.liveRun.holdWrites(time.Time{})
		}
		v.freezeSeen = time.Time{}
		return
	}
	if !b.FrozenUntil.Equal(v.freezeSeen) {
		// A deadline of this replica's monotonic clock: the registry's
		// time, capped; a step of the wall clock does not stretch it.
		v.freezeSeen, v.freezeUntil = b.FrozenUntil, now.Add(min(b.FrozenUntil.Sub(now), freezeCap))
		if b.FrozenBy != v.cfg.Runner.ReplicaID {
			v.cfg.Runner.Logger.Info("holding the live version's writes: a replica is switching to the rebuilt version",
				"projection", framework.VersionedName(v.cfg.Name, v.live), "by", b.FrozenBy, "until", b.FrozenUntil)
		}
	}
	if v.liveRun != nil {
		v.liveRun.holdWrites(v.freezeUntil)
	}
}

// beforeSwitch, when set (by tests), runs between the last comparison of
// the cursors and the switch: a test widens that moment to show the
// switch's own comparison holds.
var beforeSwitch atomic.Pointer[func()]

func (v *VersionedRunner) setStatus(s string) {
	v.mu.Lock()
	v.status = s
	v.mu.Unlock()
}

// loadCursors reads every cursor of a version.
func (v *VersionedRunner) loadCursors(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	loader, ok := v.cfg.Runner.Checkpoints.(interface {
		Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error)
	})
	if !ok {
		return framework.NewGlobalProjectionCheckpoint(), nil // cannot compare: nothing to hold the switch to
	}
	return loader.Load(ctx, name)
}

// shortOf names the streams the rebuilt version lacks or holds less of than
// the live version did (live), or "".
func (v *VersionedRunner) shortOf(ctx context.Context, name string, live *framework.GlobalProjectionCheckpoint) (string, error) {
	got, err := v.loadCursors(ctx, name)
	if err != nil {
		return "", err
	}
	var short []string
	n := 0
	for id, want := range live.All() {
		if have := got.Cursor(id); have < want {
			n++
			short = append(short, fmt.Sprintf("%s (live at %d, new at %d)", id, want, have))
		}
	}
	slices.Sort(short)
	short = short[:min(len(short), 5)]
	if n == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d stream(s) are behind in %s what the live version holds, e.g. %s: their events are not in the topic any more "+
		"(retention) or the new version parked or held them earlier; switching would lose them (see projectorctl parked list %s, or abort the rebuild)",
		n, name, strings.Join(short, "; "), name), nil
}

// caughtUp reports whether the new version's committed offsets have
// reached, on every partition, the last stable offset of prev (or the live
// group's committed offset, when lower), how many records it is behind the
// end now, and the ends now.
func (v *VersionedRunner) caughtUp(ctx context.Context, live, ver uint64, prev *rebuildCheck) (bool, int64, map[int32]int64, error) {
	topic := v.cfg.Runner.Topic
	starts, err := kafkaio.ListOffsets(ctx, v.admin.ListStartOffsets, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return false, 0, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := kafkaio.ListOffsets(ctx, v.admin.ListCommittedOffsets, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, 0, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	committed := func(group string) (func(int32) int64, error) {
		c, err := v.admin.FetchOffsets(ctx, group)
		if err == nil {
			err = c.Error()
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			c, err = nil, nil // not created yet: nothing committed
		}
		if err != nil {
			return nil, fmt.Errorf("committed offsets of %s: %w", group, err)
		}
		return func(p int32) int64 {
			s, _ := starts.Lookup(topic, p)
			pos := s.Offset
			if o, ok := c.Lookup(topic, p); ok && o.At > pos {
				pos = o.At
			}
			return pos
		}, nil
	}
	at, err := committed(framework.VersionGroup(v.cfg.Runner.Group, ver))
	if err != nil {
		return false, 0, nil, err
	}
	liveAt, err := committed(framework.VersionGroup(v.cfg.Runner.Group, live))
	if err != nil {
		return false, 0, nil, err
	}
	now := map[int32]int64{}
	var behind int64
	ends.Each(func(o kadm.ListedOffset) {
		now[o.Partition] = o.Offset
		behind += max(o.Offset-at(o.Partition), 0)
	})
	if prev == nil || len(now) == 0 {
		return false, behind, now, nil
	}
	for p, end := range now {
		target, ok := prev.ends[p]
		if !ok {
			target = end // a partition added since: its end now
		}
		if at(p) < min(target, liveAt(p)) {
			return false, behind, now, nil
		}
	}
	return true, behind, now, nil
}

// newlyParked names the streams parked in the rebuilt version that are not
// parked in the live one, or parked at an earlier sequence: the new version
// lacks their later events, and switching to it would serve an incomplete
// model.
func (v *VersionedRunner) newlyParked(ctx context.Context, live, ver uint64) (string, error) {
	store, ok := v.cfg.Runner.Parked, v.cfg.Runner.Parked != nil
	if !ok {
		store, ok = v.cfg.Runner.Checkpoints.(controlplane.ParkStore)
	}
	if !ok {
		return "", nil
	}
	inLive, err := store.Parked(ctx, framework.VersionedName(v.cfg.Name, live))
	if err != nil {
		return "", err
	}
	inNew, err := store.Parked(ctx, framework.VersionedName(v.cfg.Name, ver))
	if err != nil {
		return "", err
	}
	old := map[string]uint64{}
	for _, p := range inLive {
		old[p.StreamID] = p.Sequence
	}
	var names []string
	for _, p := range inNew {
		if seq, ok := old[p.StreamID]; !ok || p.Sequence < seq {
			names = append(names, fmt.Sprintf("%s at sequence %d (%s)", p.StreamID, p.Sequence, p.Reason))
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d stream(s) parked in %s and not in the live version (or at an earlier sequence): %s (resolve them with projectorctl parked list %s, or abort the rebuild)",
		len(names), framework.VersionedName(v.cfg.Name, ver), strings.Join(names, "; "), framework.VersionedName(v.cfg.Name, ver)), nil
}

// retire deletes the versions whose grace period is over: first the
// consumer group (refused by Kafka while a replica still consumes in it),
// then the keys.
func (v *VersionedRunner) retire(ctx context.Context, vs controlplane.Versions) {
	log := v.cfg.Runner.Logger
	for _, r := range vs.Retiring {
		if r.Keep || time.Now().Before(r.RetireAt) {
			continue
		}
		v.mu.Lock()
		_, runs := v.running[r.Version]
		v.mu.Unlock()
		if runs {
			continue
		}
		name := framework.VersionedName(v.cfg.Name, r.Version)
		group := framework.VersionGroup(v.cfg.Runner.Group, r.Version)
		resp, err := v.admin.DeleteGroup(ctx, group)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			log.InfoContext(ctx, "cannot delete the consumer group of a retired version yet", "projection", name, "group", group, "err", err)
			continue
		}
		if err := v.cfg.Versions.DropVersion(ctx, v.cfg.Name, r.Version); err != nil {
			log.WarnContext(ctx, "cannot drop a retired version", "projection", name, "err", err)
			continue
		}
		log.InfoContext(ctx, "dropped a retired read-model version", "projection", name, "group", group, "why", r.Why)
	}
}
