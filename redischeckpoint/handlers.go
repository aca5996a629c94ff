package redischeckpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/projector-dev/projector/framework"
)

// ErrUnknownEventType reports an event whose type has no handler in a
// [Handlers] table that rejects unknown types ([Handlers.RejectUnknown]).
var ErrUnknownEventType = errors.New("redischeckpoint: unknown event type")

// Decoder decodes the payload of e into v, a non-nil pointer to the
// payload type of e's handler (a *T for a handler registered with
// [Handle][T]). Its error is what [Handlers.Apply] returns, unchanged: it
// should name the stream, the sequence and the field at fault.
//
// A Decoder is the place for what every payload of a projection needs
// before it is applied: a schema-version check, validation, a check
// against the stream ID.
type Decoder func(e framework.Event, v any) error

// JSONDecoder is the default [Decoder]: it decodes e.Data as JSON into v.
// A payload that does not decode is a [*framework.DecodeError] naming the
// stream, the sequence and the event type, whose wrapped json error names
// the field (as [framework.JSONHandler] does).
func JSONDecoder(e framework.Event, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return &framework.DecodeError{StreamID: e.StreamID, Sequence: e.Sequence, EventType: e.Type, Err: err}
	}
	return nil
}

// Handlers is a table of typed apply functions, one per event type: the
// [ApplyFunc] of an [AtomicProjection] that dispatches on the event type and
// hands each handler its payload decoded into the type it takes. It is the
// AtomicProjection counterpart of [framework.JSONHandler] and
// [framework.HandlerProjection]:
//
//	var h redischeckpoint.Handlers
//	redischeckpoint.Handle(&h, "OrderPlaced", func(e framework.Event, p OrderPlaced, w *redischeckpoint.Writes) error {
//		w.IncrBy(w.Key("orders", p.Customer), 1)
//		return nil
//	})
//	p, err := store.NewAtomicProjection("orders", h.Apply)
//
// The zero value is an empty table that decodes JSON and ignores events
// of unknown types. Register every handler before the first Apply; from
// then on a Handlers is safe for concurrent use, and its fields must not
// change.
type Handlers struct {
	// Decoder decodes every payload before its handler runs; nil means
	// [JSONDecoder].
	Decoder Decoder

	// RejectUnknown makes an event of a type without a handler an error
	// ([ErrUnknownEventType]), which stops its stream. By default such an
	// event records nothing and its cursor advances: a read model that
	// ignores event types it does not use keeps working when the write
	// side adds new ones. Reject them when every event type on the
	// projection's streams must count.
	RejectUnknown bool

	fns map[string]ApplyFunc
}

// Handle registers fn as the handler of events of type eventType in h.
// The handler receives the payload decoded into a T by h's Decoder; when
// decoding fails, fn is not called and Apply returns the decoder's error.
//
// Registering a type twice, an empty type or a nil fn is a programming
// error: Handle panics.
func Handle[T any](h *Handlers, eventType string, fn func(e framework.Event, payload T, w *Writes) error) {
	if eventType == "" {
		panic("redischeckpoint: Handle: empty event type")
	}
	if fn == nil {
		panic(fmt.Sprintf("redischeckpoint: Handle %s: nil handler", eventType))
	}
	if _, dup := h.fns[eventType]; dup {
		panic(fmt.Sprintf("redischeckpoint: Handle: event type %s registered twice", eventType))
	}
	if h.fns == nil {
		h.fns = map[string]ApplyFunc{}
	}
	h.fns[eventType] = func(e framework.Event, w *Writes) error {
		var payload T
		if err := h.decode(e, &payload); err != nil {
			return err
		}
		return fn(e, payload, w)
	}
}

func (h *Handlers) decode(e framework.Event, v any) error {
	if h.Decoder == nil {
		return JSONDecoder(e, v)
	}
	return h.Decoder(e, v)
}

// Apply is an [ApplyFunc]: it runs the handler of e's type. An event of a
// type without a handler records nothing, or is an error wrapping
// [ErrUnknownEventType] when h.RejectUnknown is set.
func (h *Handlers) Apply(e framework.Event, w *Writes) error {
	fn, ok := h.fns[e.Type]
	if ok {
		return fn(e, w)
	}
	if h.RejectUnknown {
		return fmt.Errorf("%w %q: stream %s sequence %d", ErrUnknownEventType, e.Type, e.StreamID, e.Sequence)
	}
	return nil
}

// Types returns the event types with a handler, sorted.
func (h *Handlers) Types() []string {
	types := make([]string, 0, len(h.fns))
	for t := range h.fns {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}
