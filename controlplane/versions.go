package controlplane

import (
	"fmt"
	"time"
)

// Versions is the registry of a projection's read-model versions.
type Versions struct {
	// Live is the version readers read and the replicas keep up to date
	// (0: the unversioned layout).
	Live uint64 `json:"live"`
	// Last is the highest version ever created: a new rebuild takes
	// Last+1, so a version number is never used twice.
	Last uint64 `json:"last"`
	// Building is the rebuild in progress, if any.
	Building *Rebuild `json:"building,omitempty"`
	// Retiring are former live versions (and aborted rebuilds) whose keys
	// and consumer group are deleted at their RetireAt, unless kept.
	Retiring []Retiring `json:"retiring,omitempty"`
	// SwitchedAt, SwitchedBy and SwitchedFrom describe the last switch of
	// the live pointer.
	SwitchedAt   time.Time `json:"switched_at,omitzero"`
	SwitchedBy   string    `json:"switched_by,omitempty"`
	SwitchedFrom uint64    `json:"switched_from,omitempty"`
	// History lists the last rebuilds that ended (switched, aborted or
	// failed), newest first.
	History []Rebuild `json:"history,omitempty"`
}

// Rebuild is a version being built beside the live one.
type Rebuild struct {
	Version   uint64        `json:"version"`
	By        string        `json:"by"`
	Reason    string        `json:"reason,omitempty"`
	StartedAt time.Time     `json:"started_at"`
	Grace     time.Duration `json:"grace"` // how long the version it replaces is kept after the switch
	Keep      bool          `json:"keep,omitempty"`
	// Blocked says why the switch waits although the version may have
	// caught up (streams parked in it), as last seen by a replica.
	Blocked string `json:"blocked,omitempty"`
	// CaughtUpAt is when a replica found it caught up; EndedAt and
	// Outcome ("switched", "aborted") are set when it ends.
	CaughtUpAt time.Time `json:"caught_up_at,omitzero"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	Outcome    string    `json:"outcome,omitempty"`
	// FrozenUntil, while in the future, asks every replica to hold the
	// live version's writes until then: the replica about to switch
	// (FrozenBy) lets the rebuilt version catch up with a live model that
	// stands still, then switches. Readers see the live model unchanged
	// meanwhile. A freeze nobody ends (its replica died) ends at
	// FrozenUntil; replicas also cap it with their own clock.
	FrozenUntil time.Time `json:"frozen_until,omitzero"`
	FrozenBy    string    `json:"frozen_by,omitempty"`
	// FrozenAt is when the last freeze began (it stays when the freeze
	// ends): replicas freeze at most once per interval, across the group.
	FrozenAt time.Time `json:"frozen_at,omitzero"`
}

// Freeze records in r a freeze of the live version by replica by until
// (zero: by ends its freeze; a freeze of another replica stays). It refuses
// to replace a freeze of another replica that still lasts.
func Freeze(r *Rebuild, until time.Time, by string, now time.Time) error {
	if until.IsZero() {
		if r.FrozenBy == by {
			r.FrozenUntil, r.FrozenBy = time.Time{}, ""
		}
		return nil
	}
	if r.Frozen(now) && r.FrozenBy != by {
		return fmt.Errorf("the live version is already held by %s until %s", r.FrozenBy, r.FrozenUntil.Format(time.RFC3339Nano))
	}
	r.FrozenUntil, r.FrozenBy, r.FrozenAt = until.UTC(), by, now.UTC()
	return nil
}

// Frozen reports whether the rebuild asks the replicas to hold the live
// version's writes at now.
func (r *Rebuild) Frozen(now time.Time) bool {
	return r != nil && now.Before(r.FrozenUntil)
}

// Retiring is a version no longer live (or an aborted rebuild) waiting for
// deletion.
type Retiring struct {
	Version  uint64    `json:"version"`
	RetireAt time.Time `json:"retire_at"`
	Keep     bool      `json:"keep,omitempty"` // kept until deleted by hand
	Why      string    `json:"why"`            // "replaced by v3", "aborted"
}
