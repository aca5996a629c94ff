package framework

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Event is one recorded event of one stream: the envelope every projection
// receives.
type Event struct {
	// StreamID names the stream, conventionally "process/{tenant}/{process}".
	StreamID string
	// Sequence is the event's position in its stream: it starts at 1 and
	// has no gaps.
	Sequence uint64
	// EventID identifies the event globally. Two events with the same
	// stream and sequence but different IDs are a conflict.
	EventID string
	// Type names the kind of event. Projections ignore types they do not
	// know.
	Type string
	// SchemaVersion is the version of Data's schema for this Type.
	SchemaVersion int
	// Data is the payload, usually JSON.
	Data []byte
	// Metadata carries correlation, causation, tenant and similar keys.
	Metadata map[string]string
	// RecordedAt is when the store accepted the event.
	RecordedAt time.Time
	// Position is where the event sits in its source (for Kafka: partition
	// and offset), or nil when the source has no such notion.
	Position *Position
}

// String names the event for logs and errors.
func (e Event) String() string {
	return fmt.Sprintf("%s@%d (%s, id %s)", e.StreamID, e.Sequence, e.Type, e.EventID)
}

// Position is an event's place in a partitioned log.
type Position struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// String formats the position as "partition/offset".
func (p Position) String() string { return fmt.Sprintf("%d/%d", p.Partition, p.Offset) }

// EventData is an event to append: the store assigns the stream, the
// sequence and the recording time.
type EventData struct {
	// EventID identifies the event; when empty the store assigns a new
	// random ID (see [NewEventID]).
	EventID       string
	Type          string
	SchemaVersion int
	Data          []byte
	Metadata      map[string]string
}

// Metadata keys that Projector itself understands.
const (
	MetadataCorrelationID = "correlation-id"
	MetadataCausationID   = "causation-id"
	MetadataTenant        = "tenant"
)

// NewEventID returns a random version 4 UUID in its canonical text form.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
