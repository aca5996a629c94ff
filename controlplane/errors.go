package controlplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of the control plane. Stores return errors that match them with
// [errors.Is].
var (
	// ErrFenced reports a write whose fence (see [Fence]) is no longer
	// current: another worker owns the partition now, or a replay started
	// a new epoch. Nothing of the write was stored. Stores that support
	// fencing return errors that match it with [errors.Is].
	ErrFenced = errors.New("controlplane: fenced")

	// ErrStateLost reports that the store no longer holds state a writer
	// relied on: its fences, cursors or read model went back in time (a
	// Redis restart without persistence, a failover that lost writes, a
	// flush, an evicted key). Nothing of the write was stored; what was
	// lost must be rebuilt (a replay).
	ErrStateLost = errors.New("controlplane: stored state lost")

	// ErrResetPending reports a write refused because a replay raised the
	// epoch and the new epoch's read model has not been dropped yet:
	// nobody may write into it before the reset (the write would be wiped
	// by it). Nothing of the write was stored; the writer leaves the
	// consumer group and waits for the reset.
	ErrResetPending = errors.New("controlplane: a replay's reset of the read model is pending")

	// ErrVersionClosed reports a write refused because its read-model
	// version is no longer live or being built: a rebuild replaced it, or
	// its rebuild was aborted (see [Versions]). Nothing was stored.
	ErrVersionClosed = errors.New("controlplane: read-model version closed")
	// ErrSwitchBehind reports a switch to a rebuilt version refused
	// because the new version held less of some stream than the live one
	// at the moment of the switch: switching would make the model served
	// go back. Nothing changed; try again once it caught up.
	ErrSwitchBehind = errors.New("controlplane: the rebuilt version is behind the live one")
)

// SwitchBehindError is [ErrSwitchBehind] with the streams that were behind
// (at most 5 named) and how many were.
type SwitchBehindError struct {
	Projection string
	Version    uint64
	Behind     int      // streams the new version held less of
	Examples   []string // "stream (live at 7, new at 5)"
}

func (e *SwitchBehindError) Error() string {
	return fmt.Sprintf("controlplane: %s@v%d is behind the live version in %d stream(s), e.g. %s: the switch waits",
		e.Projection, e.Version, e.Behind, strings.Join(e.Examples, "; "))
}

func (e *SwitchBehindError) Unwrap() error { return ErrSwitchBehind }

// CompareCursors returns the streams of live whose cursor in next is
// lower (absent counts as 0): how many, and up to 5 of them described,
// sorted.
func CompareCursors(live, next map[string]uint64) (int, []string) {
	var short []string
	n := 0
	for id, want := range live {
		if have := next[id]; have < want {
			n++
			short = append(short, fmt.Sprintf("%s (live at %d, new at %d)", id, want, have))
		}
	}
	slices.Sort(short)
	return n, short[:min(len(short), 5)]
}
