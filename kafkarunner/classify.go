package kafkarunner

import (
	"fmt"

	"github.com/projector-dev/projector/framework"
)

// Classification of an event at or below its stream's cursor: a
// redelivery (skipped) or a conflict (another event repeating an applied
// sequence; the stream parks).

// dupVerdict is what a duplicate (an event at or below its stream's cursor)
// turned out to be.
type dupVerdict struct {
	verified bool   // known to repeat an applied event: skip
	conflict bool   // repeats an applied sequence with another event: park
	reason   string // for a conflict
}

// duplicate classifies an event at or below its stream's cursor, at offset
// off of the partition.
//
// A record at or before the offset of the stream's head is a redelivery: a
// different event there would have been recognised (and the stream parked)
// when it was first processed, since every record is first processed after
// the head that preceded it. A record after the head's offset that repeats
// an applied sequence is a conflict, unless it carries the very event ID
// applied at that sequence (a producer that wrote the same event twice).
// Where neither the head's offset nor the event ID at the sequence is known
// (state from an older version, a cursor an admin moved), the duplicate is
// skipped and counted as unverified.
func (s *session) duplicate(e framework.Event, off int64, inRun map[streamSeq]string) dupVerdict {
	conflict := func(other string) dupVerdict {
		return dupVerdict{conflict: true, reason: (&framework.SequenceConflictError{StreamID: e.StreamID, Sequence: e.Sequence, Applied: other, EventID: e.EventID}).Error()}
	}
	if id, ok := inRun[streamSeq{e.StreamID, e.Sequence}]; ok {
		if id != e.EventID {
			return conflict(id)
		}
		return dupVerdict{verified: true}
	}
	h, ok := s.heads[e.StreamID]
	if ok && h.offset >= 0 && off >= 0 && off <= h.offset {
		// Processed before (and, if it was a conflict, parked and
		// resolved): a redelivery.
		return dupVerdict{verified: true}
	}
	if id, ok := s.recent.EventAt(e.StreamID, e.Sequence); ok {
		if id != e.EventID {
			return conflict(id)
		}
		return dupVerdict{verified: true}
	}
	if ok && h.seq == e.Sequence && h.eventID != "" {
		if h.eventID != e.EventID {
			return conflict(h.eventID)
		}
		return dupVerdict{verified: true}
	}
	if ok && h.offset >= 0 && off >= 0 {
		return dupVerdict{conflict: true, reason: fmt.Sprintf("sequence %d of stream %s was applied before offset %d (the stream is at %d); event %s at offset %d repeats it",
			e.Sequence, e.StreamID, h.offset, h.seq, e.EventID, off)}
	}
	return dupVerdict{}
}
