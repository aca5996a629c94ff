package controlplane

import "github.com/projector-dev/projector/framework"

// StreamHead is a stream's cursor together with the event applied at it,
// where known. A store that keeps heads lets a runner tell a redelivered
// event from a different event that repeats an applied sequence (a
// conflict), also after a restart.
type StreamHead struct {
	StreamID string
	Sequence uint64              // the cursor: the last applied sequence
	EventID  string              // the event applied at Sequence; "" when unknown
	Position *framework.Position // where that event is in its source; nil when unknown
}

// PartitionProgress is how far a store's state of a projection covers one
// partition of its source: a runner records it before it commits an
// offset, so a committed offset beyond it means the store lost state.
type PartitionProgress struct {
	// Next is the offset after the last record the stored state covers,
	// when Recorded.
	Next     int64
	Recorded bool
	// Untracked is set when nothing is recorded but the store holds state
	// of the projection written without progress tracking (by an older
	// version): whether anything was lost before cannot be told.
	Untracked bool
}
