package kafkarunner

import "time"

// Holding the live version's writes for a rebuild's switch: the replica
// about to switch asks every replica (through the version registry) to
// apply nothing to the live version for a few seconds, so the rebuilt
// version catches up with a model that stands still. Safety does not rest
// on it: the switch compares the cursors of both versions in its own
// transaction (VersionStore.SwitchLive). The hold only lets that
// comparison succeed under a steady write load.

// holdWrites asks the runner to apply nothing before until (zero: apply
// again now). A partition finishes the batch it is applying, writes its
// cursors, and waits.
func (r *Runner) holdWrites(until time.Time) {
	if until.IsZero() {
		r.heldUntil.Store(nil)
		return
	}
	r.heldUntil.Store(&until)
}

// HeldUntil returns until when the runner holds its writes because a
// rebuild is about to switch away from its version (the zero time when it
// does not).
func (r *Runner) HeldUntil() time.Time {
	until := r.heldUntil.Load()
	if until == nil || !time.Now().Before(*until) {
		return time.Time{}
	}
	return *until
}

// waitHold holds the session while the runner holds its writes: it first
// writes the cursors of what it applied, so the version's stored cursors
// say what its model holds, then waits until the hold ends or the
// partition stops.
func (s *session) waitHold() error {
	if s.r.HeldUntil().IsZero() {
		return nil
	}
	if len(s.dirty) > 0 {
		if err := s.step(s.flush); err != nil {
			return err
		}
	}
	for {
		until := s.r.HeldUntil()
		if until.IsZero() {
			return nil
		}
		t := time.NewTimer(min(time.Until(until), 50*time.Millisecond))
		select {
		case <-s.p.quit:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
