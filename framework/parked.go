package framework

import "time"

// Reasons a stream is parked.
const (
	ParkApplyFailed = "apply-failed" // the projection kept failing on the event
	ParkGap         = "gap"          // the event's sequence skips ahead of the cursor
	ParkConflict    = "conflict"     // the sequence repeats with a different event ID
	ParkMalformed   = "malformed"    // the record does not decode into an event
	// ParkPartialApply: the store applied part of the event and could not
	// take it back ([ErrPartialApply]); the read model needs a replay and
	// the event must not be applied again over it.
	ParkPartialApply = "partial-apply"
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
	Position *Position `json:"position,omitempty"`
	// DeadLetter says what became of the event's dead-letter record:
	// "copied" (the record with the reason in its headers), "reference"
	// (a record naming topic, partition and offset, because the copy
	// could not be written; DeadLetterError says why), or "pending" (not
	// written yet; retried by the partition's worker).
	DeadLetter      string `json:"dead_letter,omitempty"`
	DeadLetterError string `json:"dead_letter_error,omitempty"`
}

// Dead-letter states of a [ParkedStream].
const (
	DeadLetterPending   = "pending"
	DeadLetterCopied    = "copied"
	DeadLetterReference = "reference"
)

// Resolution records how an admin resumed a parked stream.
type Resolution struct {
	StreamID string       `json:"stream_id"`
	Action   string       `json:"action"` // "retry" or "skip"
	By       string       `json:"by"`
	Reason   string       `json:"reason"`
	At       time.Time    `json:"at"`
	Parked   ParkedStream `json:"parked"` // what was resolved
}

// Resolution actions.
const (
	ResolveRetry = "retry"
	ResolveSkip  = "skip"
)
