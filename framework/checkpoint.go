package framework

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
)

// GlobalProjectionCheckpoint holds one cursor per stream: the last sequence
// of that stream applied to a projection. A stream without a cursor is at 0.
//
// The zero value is an empty checkpoint ready to use. A checkpoint is not
// safe for concurrent use.
type GlobalProjectionCheckpoint struct {
	cursors map[string]uint64
}

// NewGlobalProjectionCheckpoint returns an empty checkpoint.
func NewGlobalProjectionCheckpoint() *GlobalProjectionCheckpoint {
	return &GlobalProjectionCheckpoint{}
}

// Cursor returns the last applied sequence of streamID, 0 when unknown.
func (c *GlobalProjectionCheckpoint) Cursor(streamID string) uint64 {
	if c == nil {
		return 0
	}
	return c.cursors[streamID]
}

// Advance moves streamID's cursor to seq if that is forward and reports
// whether it moved. A cursor never moves backwards.
func (c *GlobalProjectionCheckpoint) Advance(streamID string, seq uint64) bool {
	if seq <= c.cursors[streamID] {
		return false
	}
	if c.cursors == nil {
		c.cursors = make(map[string]uint64)
	}
	c.cursors[streamID] = seq
	return true
}

// Len returns the number of streams with a cursor above 0.
func (c *GlobalProjectionCheckpoint) Len() int {
	if c == nil {
		return 0
	}
	return len(c.cursors)
}

// All yields every stream and its cursor, in stream-ID order.
func (c *GlobalProjectionCheckpoint) All() iter.Seq2[string, uint64] {
	return func(yield func(string, uint64) bool) {
		if c == nil {
			return
		}
		for _, id := range slices.Sorted(maps.Keys(c.cursors)) {
			if !yield(id, c.cursors[id]) {
				return
			}
		}
	}
}

// Clone returns an independent copy.
func (c *GlobalProjectionCheckpoint) Clone() *GlobalProjectionCheckpoint {
	if c == nil || len(c.cursors) == 0 {
		return &GlobalProjectionCheckpoint{}
	}
	return &GlobalProjectionCheckpoint{cursors: maps.Clone(c.cursors)}
}

// Merge advances every cursor of c to the cursor in other where that is
// forward.
func (c *GlobalProjectionCheckpoint) Merge(other *GlobalProjectionCheckpoint) {
	if other == nil {
		return
	}
	for id, seq := range other.cursors {
		c.Advance(id, seq)
	}
}

// MovedSince returns the cursors of c that are ahead of base: what must be
// written to bring a store holding base up to c.
func (c *GlobalProjectionCheckpoint) MovedSince(base *GlobalProjectionCheckpoint) map[string]uint64 {
	moved := make(map[string]uint64)
	if c == nil {
		return moved
	}
	for id, seq := range c.cursors {
		if seq > base.Cursor(id) {
			moved[id] = seq
		}
	}
	return moved
}

// Equal reports whether both checkpoints hold the same cursors.
func (c *GlobalProjectionCheckpoint) Equal(other *GlobalProjectionCheckpoint) bool {
	if c.Len() != other.Len() {
		return false
	}
	for id, seq := range c.All() {
		if other.Cursor(id) != seq {
			return false
		}
	}
	return true
}

// checkpointJSON is the serialised form: {"version":1,"cursors":{"id":n}}.
type checkpointJSON struct {
	Version int               `json:"version"`
	Cursors map[string]uint64 `json:"cursors"`
}

const checkpointJSONVersion = 1

// MarshalJSON encodes the checkpoint as
// {"version":1,"cursors":{"<stream>":<sequence>,...}}.
func (c *GlobalProjectionCheckpoint) MarshalJSON() ([]byte, error) {
	cursors := map[string]uint64{}
	if c != nil && c.cursors != nil {
		cursors = c.cursors
	}
	return json.Marshal(checkpointJSON{Version: checkpointJSONVersion, Cursors: cursors})
}

// UnmarshalJSON decodes what MarshalJSON produced. It rejects unknown
// versions, invalid stream IDs and anything that is not a non-negative
// integer cursor, with an error wrapping [ErrInvalidCheckpoint]. Zero cursors
// are dropped: absent means 0.
func (c *GlobalProjectionCheckpoint) UnmarshalJSON(data []byte) error {
	var raw checkpointJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCheckpoint, err)
	}
	if raw.Version != checkpointJSONVersion {
		return fmt.Errorf("%w: unsupported version %d (want %d)", ErrInvalidCheckpoint, raw.Version, checkpointJSONVersion)
	}
	cursors := make(map[string]uint64, len(raw.Cursors))
	for id, seq := range raw.Cursors {
		if err := ValidateStreamID(id); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidCheckpoint, err)
		}
		if seq > 0 {
			cursors[id] = seq
		}
	}
	c.cursors = cursors
	return nil
}
