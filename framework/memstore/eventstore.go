package memstore

import (
	"context"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/projector-dev/projector/framework"
)

// readBatch is how many events ReadStream copies per lock.
const readBatch = 256

// EventStore is an in-memory [framework.EventStore]. The zero value is an
// empty store ready to use.
type EventStore struct {
	mu      sync.RWMutex
	streams map[string][]framework.Event
	ids     []string // sorted stream IDs, for ListStreams
}

var (
	_ framework.EventStore        = (*EventStore)(nil)
	_ framework.MultiStreamReader = (*EventStore)(nil)
)

// NewEventStore returns an empty store.
func NewEventStore() *EventStore { return &EventStore{} }

// Append implements [framework.EventStore].
func (s *EventStore) Append(ctx context.Context, streamID string, expected framework.ExpectedVersion, events []framework.EventData) ([]framework.Event, error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recordedAt := time.Now().UTC()

	s.mu.Lock()
	defer s.mu.Unlock()
	stream := s.streams[streamID]
	version := uint64(len(stream))
	if !expected.Check(version) {
		return nil, &framework.VersionConflictError{StreamID: streamID, Expected: expected, Actual: version}
	}
	if len(events) == 0 {
		return nil, nil
	}
	recorded := make([]framework.Event, len(events))
	for i, d := range events {
		id := d.EventID
		if id == "" {
			id = framework.NewEventID()
		}
		recorded[i] = framework.Event{
			StreamID:      streamID,
			Sequence:      version + uint64(i) + 1,
			EventID:       id,
			Type:          d.Type,
			SchemaVersion: d.SchemaVersion,
			Data:          slices.Clone(d.Data),
			Metadata:      maps.Clone(d.Metadata),
			RecordedAt:    recordedAt,
		}
	}
	if s.streams == nil {
		s.streams = make(map[string][]framework.Event)
	}
	if version == 0 {
		i, _ := slices.BinarySearch(s.ids, streamID)
		s.ids = slices.Insert(s.ids, i, streamID)
	}
	s.streams[streamID] = append(stream, recorded...)
	return cloneEvents(recorded), nil
}

// ReadStream implements [framework.EventStore]. It copies events out
// readBatch at a time and holds no lock while the caller works.
func (s *EventStore) ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		if err := framework.ValidateStreamID(streamID); err != nil {
			yield(framework.Event{}, err)
			return
		}
		s.mu.RLock()
		head := uint64(len(s.streams[streamID]))
		s.mu.RUnlock()
		buf := make([]framework.Event, 0, readBatch)
		for next := after; next < head; {
			if err := ctx.Err(); err != nil {
				yield(framework.Event{}, err)
				return
			}
			end := min(next+readBatch, head)
			s.mu.RLock()
			buf = append(buf[:0], s.streams[streamID][next:end]...)
			s.mu.RUnlock()
			for _, e := range buf {
				if !yield(cloneEvent(e), nil) {
					return
				}
			}
			next = end
		}
	}
}

// interleave is how many events of one stream ReadStreams yields before
// turning to the next stream.
const interleave = 3

// ReadStreams implements [framework.MultiStreamReader]. It takes the
// streams in turn, a few events of each, so that callers meet events of
// many streams interleaved as a partitioned store yields them; each stream
// stops at its head as of the call.
func (s *EventStore) ReadStreams(ctx context.Context, streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		type reading struct {
			id         string
			next, head uint64
		}
		open := make([]reading, 0, len(streams))
		s.mu.RLock()
		for _, c := range streams {
			open = append(open, reading{id: c.StreamID, next: c.After, head: uint64(len(s.streams[c.StreamID]))})
		}
		s.mu.RUnlock()
		for _, c := range streams {
			if err := framework.ValidateStreamID(c.StreamID); err != nil {
				if !yield(framework.Event{}, &framework.StreamError{StreamID: c.StreamID, Err: err}) {
					return
				}
			}
		}
		open = slices.DeleteFunc(open, func(r reading) bool { return r.next >= r.head || framework.ValidateStreamID(r.id) != nil })
		buf := make([]framework.Event, 0, interleave)
		for len(open) > 0 {
			for i := range open {
				if err := ctx.Err(); err != nil {
					yield(framework.Event{}, err)
					return
				}
				r := &open[i]
				end := min(r.next+interleave, r.head)
				s.mu.RLock()
				buf = append(buf[:0], s.streams[r.id][r.next:end]...)
				s.mu.RUnlock()
				for _, e := range buf {
					if !yield(cloneEvent(e), nil) {
						return
					}
				}
				r.next = end
			}
			open = slices.DeleteFunc(open, func(r reading) bool { return r.next >= r.head })
		}
	}
}

// ListStreams implements [framework.EventStore].
func (s *EventStore) ListStreams(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := framework.ValidatePrefix(prefix); err != nil {
			yield("", err)
			return
		}
		s.mu.RLock()
		i, _ := slices.BinarySearch(s.ids, prefix)
		var page []string
		for ; i < len(s.ids) && strings.HasPrefix(s.ids[i], prefix); i++ {
			page = append(page, s.ids[i])
		}
		s.mu.RUnlock()
		for _, id := range page {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			if !yield(id, nil) {
				return
			}
		}
	}
}

// StreamVersion implements [framework.EventStore].
func (s *EventStore) StreamVersion(ctx context.Context, streamID string) (uint64, error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(len(s.streams[streamID])), nil
}

func cloneEvents(events []framework.Event) []framework.Event {
	out := make([]framework.Event, len(events))
	for i, e := range events {
		out[i] = cloneEvent(e)
	}
	return out
}

// cloneEvent copies the mutable parts so callers cannot change stored
// events.
func cloneEvent(e framework.Event) framework.Event {
	e.Data = slices.Clone(e.Data)
	e.Metadata = maps.Clone(e.Metadata)
	return e
}
