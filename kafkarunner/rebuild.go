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
	// Right before the switch the new version must hold what the live one
	// holds now, not only what it held at the previous check: the live
	// version applied more since, and a reader must not see the model go
	// back at the switch. Short by a moment: the next check tries again.
	// This read only spares a switch attempt that would be refused: the
	// store's SwitchLive compares the cursors again in the switch's own
	// transaction, which closes the live version (ErrSwitchBehind).
	now, err := v.loadCursors(ctx, liveName)
	if err != nil {
		log.WarnContext(ctx, "cannot read the live version's cursors", "projection", liveName, "err", err)
		return
	}
	if short, err := v.shortOf(ctx, name, now); err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's cursors with the live version's", "projection", name, "err", err)
		return
	} else if short != "" {
		v.setStatus(fmt.Sprintf("%s is a moment behind the live version %s: the switch waits for the next check", name, liveName))
		return
	}
	if hook := beforeSwitch.Load(); hook != nil {
		(*hook)()
	}
	if _, err := v.cfg.Versions.SwitchLive(ctx, v.cfg.Name, b.Version, v.cfg.Runner.ReplicaID); errors.Is(err, controlplane.ErrSwitchBehind) {
		v.setStatus(fmt.Sprintf("%s is a moment behind the live version %s: the switch waits for the next check", name, liveName))
		log.DebugContext(ctx, "the switch waits: the rebuilt version was behind at the switch", "projection", name, "err", err)
		return
	} else if err != nil {
		log.InfoContext(ctx, "the switch to the rebuilt version did not happen here (another replica may have made it)", "projection", name, "err", err)
		return
	}
	log.InfoContext(ctx, "switched the live read model to the rebuilt version", "projection", name, "from", liveName)
	v.setStatus("")
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
