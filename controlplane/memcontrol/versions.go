package memcontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

var (
	// ErrRebuildInProgress reports a rebuild asked while another runs.
	ErrRebuildInProgress = errors.New("memcontrol: a rebuild is in progress")
	// ErrReplayInProgress reports a rebuild asked while an in-place replay
	// of the live version runs.
	ErrReplayInProgress = errors.New("memcontrol: a replay of the live version is in progress")
	// ErrNoRebuild reports a switch or abort without the rebuild it names.
	ErrNoRebuild = errors.New("memcontrol: no such rebuild in progress")
)

// historyKept is how many ended rebuilds the registry remembers.
const historyKept = 20

// bare checks that projection is a valid name without a version.
func bare(projection string) error {
	if _, v := framework.SplitVersionedName(projection); v > 0 {
		return fmt.Errorf("memcontrol: %q names a version; give the projection's name", projection)
	}
	return framework.ValidateProjectionName(projection)
}

// readVersions returns a deep copy of projection's registry. s.mu must be
// held.
func (s *Store) readVersions(projection string) (controlplane.Versions, error) {
	var v controlplane.Versions
	if cur := s.versions[projection]; cur != nil {
		c, err := copyVersions(*cur)
		if err != nil {
			return controlplane.Versions{}, err
		}
		v = c
	}
	v.Last = max(v.Last, v.Live)
	return v, nil
}

// updateVersions runs change on a copy of the registry and stores the
// copy unless change fails.
func (s *Store) updateVersions(projection string, change func(*controlplane.Versions) error) (controlplane.Versions, error) {
	if err := bare(projection); err != nil {
		return controlplane.Versions{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.readVersions(projection)
	if err != nil {
		return controlplane.Versions{}, err
	}
	if err := change(&v); err != nil {
		return controlplane.Versions{}, err
	}
	stored, err := copyVersions(v)
	if err != nil {
		return controlplane.Versions{}, err
	}
	s.versions[projection] = &stored
	return v, nil
}

// copyVersions returns a deep copy of v (no slice or pointer shared).
func copyVersions(v controlplane.Versions) (controlplane.Versions, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return controlplane.Versions{}, err
	}
	var c controlplane.Versions
	err = json.Unmarshal(raw, &c)
	return c, err
}

// Versions returns the projection's registry of read-model versions (the
// zero value when no rebuild ever ran). projection is the bare name.
func (s *Store) Versions(ctx context.Context, projection string) (controlplane.Versions, error) {
	if err := bare(projection); err != nil {
		return controlplane.Versions{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readVersions(projection)
}

// Live returns the versioned name of the projection's live version.
func (s *Store) Live(ctx context.Context, projection string) (string, error) {
	v, err := s.Versions(ctx, projection)
	if err != nil {
		return "", err
	}
	return framework.VersionedName(projection, v.Live), nil
}

// StartRebuild creates the next version (Last+1) beside the live one and
// records it as building; r's Version and StartedAt are set. It fails
// with [ErrRebuildInProgress] while another rebuild runs and with
// [ErrReplayInProgress] while a replay of the live version runs.
func (s *Store) StartRebuild(ctx context.Context, projection string, r controlplane.Rebuild) (controlplane.Rebuild, error) {
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		if v.Building != nil {
			return fmt.Errorf("%w: %s@v%d, started by %s at %s", ErrRebuildInProgress, projection, v.Building.Version,
				v.Building.By, v.Building.StartedAt.Format(time.RFC3339))
		}
		live := framework.VersionedName(projection, v.Live)
		if p := s.projections[live]; p != nil && p.control.replay != nil {
			var rp controlplane.Replay
			if json.Unmarshal(p.control.replay, &rp) == nil &&
				(rp.Phase == controlplane.ReplayPausing || rp.Phase == controlplane.ReplayResetting || rp.Phase == controlplane.ReplayRebuild) {
				return fmt.Errorf("%w: replay %s of %s is in phase %s", ErrReplayInProgress, rp.ID, live, rp.Phase)
			}
		}
		r.Version, r.StartedAt = v.Last+1, now()
		v.Last = r.Version
		b := r
		v.Building = &b
		// A fresh version: nothing of an earlier use of the number (there
		// is none: Last only grows) may remain.
		s.projections[framework.VersionedName(projection, r.Version)] = newProjection()
		return nil
	})
	return r, err
}

// UpdateRebuild records what a replica found about the rebuild of
// version: why it cannot switch yet ("" when nothing blocks it) and
// whether it caught up.
func (s *Store) UpdateRebuild(ctx context.Context, projection string, version uint64, blocked string, caughtUp bool) error {
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		if v.Building == nil || v.Building.Version != version {
			return fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		v.Building.Blocked = blocked
		if caughtUp && v.Building.CaughtUpAt.IsZero() {
			v.Building.CaughtUpAt = now()
		}
		return nil
	})
	return err
}

// FreezeLive asks the replicas to hold the live version's writes until
// until (zero: end the freeze), for the switch to the rebuild of version.
func (s *Store) FreezeLive(ctx context.Context, projection string, version uint64, until time.Time, by string) error {
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		if v.Building == nil || v.Building.Version != version {
			return fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		if err := controlplane.Freeze(v.Building, until, by, time.Now()); err != nil {
			return err
		}
		return nil
	})
	return err
}

// close closes a version: no fence is handed out for it, and fenced
// writes and reports to it are refused. s.mu must be held.
func (s *Store) close(name string) {
	p := s.projections[name]
	if p == nil {
		p = newProjection()
		s.projections[name] = p
	}
	p.closed = true
}

// SwitchLive makes the rebuilt version live: the version it replaces is
// closed and retires after the rebuild's grace period. It fails with
// [ErrNoRebuild] unless version is the rebuild in progress.
func (s *Store) SwitchLive(ctx context.Context, projection string, version uint64, by string) (controlplane.Versions, error) {
	return s.updateVersions(projection, func(v *controlplane.Versions) error {
		if v.Building == nil || v.Building.Version != version {
			return fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		// The new version must hold, now, what the live one holds: the
		// check and the switch are one step (under the store's lock).
		if n, ex := controlplane.CompareCursors(s.cursorsOf(framework.VersionedName(projection, v.Live)),
			s.cursorsOf(framework.VersionedName(projection, version))); n > 0 {
			return &controlplane.SwitchBehindError{Projection: projection, Version: version, Behind: n, Examples: ex}
		}
		at := now()
		old := v.Live
		b := *v.Building
		b.EndedAt, b.Outcome, b.Blocked = at, "switched", ""
		b.FrozenUntil, b.FrozenBy = time.Time{}, ""
		v.Live, v.Building = version, nil
		v.SwitchedAt, v.SwitchedBy, v.SwitchedFrom = at, by, old
		v.Retiring = append(v.Retiring, controlplane.Retiring{Version: old, RetireAt: at.Add(b.Grace), Keep: b.Keep,
			Why: fmt.Sprintf("replaced by v%d", version)})
		v.History = prependHistory(v.History, b)
		s.close(framework.VersionedName(projection, old))
		return nil
	})
}

// AbortRebuild gives up the rebuild in progress: its version is closed and
// due for deletion at once; the live version is untouched. It returns the
// aborted rebuild, or [ErrNoRebuild].
func (s *Store) AbortRebuild(ctx context.Context, projection, by string) (controlplane.Rebuild, error) {
	var aborted controlplane.Rebuild
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		if v.Building == nil {
			return fmt.Errorf("%w: %s has no rebuild to abort", ErrNoRebuild, projection)
		}
		at := now()
		aborted = *v.Building
		aborted.EndedAt, aborted.Outcome = at, "aborted by "+by
		v.Building = nil
		v.Retiring = append(v.Retiring, controlplane.Retiring{Version: aborted.Version, RetireAt: at, Why: "aborted by " + by})
		v.History = prependHistory(v.History, aborted)
		s.close(framework.VersionedName(projection, aborted.Version))
		return nil
	})
	return aborted, err
}

// RetireNow makes a retiring version due for deletion at once (also one
// kept).
func (s *Store) RetireNow(ctx context.Context, projection string, version uint64) error {
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		i := slices.IndexFunc(v.Retiring, func(r controlplane.Retiring) bool { return r.Version == version })
		if i < 0 {
			return fmt.Errorf("memcontrol: %s@v%d is not a retired version (live v%d)", projection, version, v.Live)
		}
		v.Retiring[i].RetireAt, v.Retiring[i].Keep = now(), false
		return nil
	})
	return err
}

// DropVersion deletes the state of a closed, retired version and removes
// it from the registry; the version stays closed (a tombstone), so that a
// replica still running it cannot take a fence and write there again.
func (s *Store) DropVersion(ctx context.Context, projection string, version uint64) error {
	_, err := s.updateVersions(projection, func(v *controlplane.Versions) error {
		if version == v.Live || (v.Building != nil && v.Building.Version == version) {
			return fmt.Errorf("memcontrol: %s@v%d is live or building; it cannot be dropped", projection, version)
		}
		name := framework.VersionedName(projection, version)
		if p := s.projections[name]; p == nil || !p.closed {
			return fmt.Errorf("memcontrol: %s@v%d is not closed; it cannot be dropped", projection, version)
		}
		tomb := newProjection()
		tomb.closed = true
		s.projections[name] = tomb
		v.Retiring = slices.DeleteFunc(v.Retiring, func(r controlplane.Retiring) bool { return r.Version == version })
		return nil
	})
	return err
}

func prependHistory(h []controlplane.Rebuild, r controlplane.Rebuild) []controlplane.Rebuild {
	h = append([]controlplane.Rebuild{r}, h...)
	if len(h) > historyKept {
		h = h[:historyKept]
	}
	return h
}

// cursorsOf returns the cursors of the version name; s.mu is held.
func (s *Store) cursorsOf(name string) map[string]uint64 {
	if p := s.projections[name]; p != nil {
		return p.cursors
	}
	return nil
}
