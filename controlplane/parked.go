package controlplane

import (
	"time"

	"github.com/projector-dev/projector/framework"
)

// Reasons a stream is parked.
const (
	ParkApplyFailed = "apply-failed" // the projection kept failing on the event
	ParkGap         = "gap"          // the event's sequence skips ahead of the cursor
	ParkConflict    = "conflict"     // the sequence repeats with a different event ID
	ParkMalformed   = "malformed"    // the record does not decode into an event
	// ParkPartialApply: the store applied part of the event and could not
	// take it back ([framework.ErrPartialApply]); the read model needs a replay and
	// the event must not be applied again over it.
	ParkPartialApply = "partial-apply"
	// ParkMisplaced: the record sits on a partition other than its
	// stream's home (the murmur2 partition of its key): it was written by
	// a producer with another partitioner, and its stream's events are not
	// in one ordered log. The record is never applied; retry refuses it.
	ParkMisplaced = "misplaced"
)

// ParkedStream is a stream whose processing stopped at one event. Its later
// events wait; every other stream keeps flowing. Only an admin action
// (retry, or skip with a recorded reason) resumes it.
type ParkedStream struct {
	StreamID string    `json:"stream_id"`
	Sequence uint64    `json:"sequence"` // the event it stopped at
	EventID  string    `json:"event_id,omitempty"`
	Type     string    `json:"type,omitempty"`
	Reason   string    `json:"reason"` // one of the Park* constants
	Error    string    `json:"error"`
	Attempts int       `json:"attempts,omitempty"`
	ParkedAt time.Time `json:"parked_at"`
	// Position is where the event is in its source, when known.
	Position *framework.Position `json:"position,omitempty"`
	// HeldFrom, when set, is the offset in Position's partition from which
	// the stream's records are held, if lower than Position's own: a
	// resume that parked the stream again at a later record still had
	// events before it to apply.
	HeldFrom *int64 `json:"held_from,omitempty"`
	// DeadLetter says what became of the event's dead-letter record:
	// "copied" (the record with the reason in its headers), "reference"
	// (a record naming topic, partition and offset, because the copy
	// could not be written; DeadLetterError says why), or "pending" (not
	// written yet; retried by the partition's worker).
	DeadLetter      string `json:"dead_letter,omitempty"`
	DeadLetterError string `json:"dead_letter_error,omitempty"`
	// Resolving is an admin's retry or skip that the worker owning the
	// stream's partition has not carried out yet: the stream stays parked
	// (its later events held) until the worker has applied what was held
	// and unparked it. Stores fill it in Parked; Park clears it.
	Resolving *Resolution `json:"resolving,omitempty"`
}

// HoldsFrom returns the offset in Position's partition from which the
// stream's records are held; ok is false without a position.
func (p ParkedStream) HoldsFrom() (offset int64, ok bool) {
	if p.Position == nil {
		return 0, false
	}
	if p.HeldFrom != nil && *p.HeldFrom < p.Position.Offset {
		return *p.HeldFrom, true
	}
	return p.Position.Offset, true
}

// Dead-letter states of a [ParkedStream].
const (
	DeadLetterPending   = "pending"
	DeadLetterCopied    = "copied"
	DeadLetterReference = "reference"
)

// Resolution records how an admin resumed a parked stream: requested by
// the admin (At), carried out by the worker owning the stream's partition
// (Done, Result).
type Resolution struct {
	StreamID string       `json:"stream_id"`
	Action   string       `json:"action"` // "retry", "skip" or "replay"
	By       string       `json:"by"`
	Reason   string       `json:"reason"`
	At       time.Time    `json:"at"`
	Parked   ParkedStream `json:"parked"` // what was resolved
	// Force was given to skip to a sequence beyond what the stream shows
	// in Kafka.
	Force bool `json:"force,omitempty"`
	// Drop (a skip of a gap only) passes over the parked record without
	// moving the cursor, instead of accepting the missing events: for a
	// record whose sequence is bogus. The stream resumes with the events
	// held behind it.
	Drop bool `json:"drop,omitempty"`
	// Done is when the worker finished the resume; Result says what it
	// did (events applied, records passed over).
	Done   time.Time `json:"done,omitzero"`
	Result string    `json:"result,omitempty"`
}

// Resolution actions.
const (
	ResolveRetry = "retry"
	ResolveSkip  = "skip"
	// ResolveReplay records a park cleared by a replay: the read model was
	// dropped and the stream is rebuilt from its first event.
	ResolveReplay = "replay"
)
