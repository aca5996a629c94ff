package framework

import (
	"context"
	"encoding/json"
)

// Projection turns events into a read model.
//
// The runner calls Apply for the events of one stream in sequence order,
// from one goroutine per stream; with [RunnerConfig.Concurrency] above one,
// Apply is called concurrently for different streams and must be safe for
// that. ctx is cancelled when the run is stopped; Apply should return
// promptly with ctx's error then.
//
// By convention a projection ignores event types it does not know and
// returns nil for them: new event types must not break old read models.
// An error stops the stream at that event (see [ApplyError]); a panic is
// recovered and reported the same way.
type Projection interface {
	// Name identifies the projection. It names its checkpoint, and in
	// package kafkastore its consumer group and its keys in Redis:
	// renaming a projection starts it from scratch.
	Name() string
	// Apply applies one event to the read model.
	Apply(ctx context.Context, e Event) error
}

// SequenceTracker is implemented by projections that store the last applied
// sequence of each stream themselves, in the same transaction as their read
// model (the original specification's last_sequence). Catch-up over one
// stream (CatchUp, CatchUpFromStore) starts after it.
type SequenceTracker interface {
	// LastSequence returns the last sequence of streamID applied to the
	// read model, or 0 when none has been.
	LastSequence(ctx context.Context, streamID string) (uint64, error)
}

// Resetter is implemented by projections whose read model can be dropped, so
// that it can be rebuilt from the events (disposability). Reset is called
// with no Apply in flight.
type Resetter interface {
	// Reset drops the read model and every stored cursor of the projection.
	Reset(ctx context.Context) error
}

// BatchApplier is implemented by projections that apply several events
// faster together than one by one (one transaction, one round trip).
//
// The runner passes events in delivery order, each stream's in sequence
// order; a batch may hold events of several streams (the in-process runner
// passes one stream's, the Kafka runner a partition's). ApplyBatch returns
// how many leading events of the batch it applied durably; with a nil error
// that must be len(events). On error, the runner records the first applied
// events and reports the error against events[applied]. After a panic the
// runner assumes none of the batch was applied, so a batch must be atomic
// or idempotent.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, events []Event) (applied int, err error)
}

// ProjectionFunc adapts a function to [Projection].
func ProjectionFunc(name string, apply func(ctx context.Context, e Event) error) Projection {
	return funcProjection{name: name, apply: apply}
}

type funcProjection struct {
	name  string
	apply func(context.Context, Event) error
}

func (p funcProjection) Name() string                             { return p.name }
func (p funcProjection) Apply(ctx context.Context, e Event) error { return p.apply(ctx, e) }

// Handlers maps event types to the functions that apply them.
type Handlers map[string]func(ctx context.Context, e Event) error

// HandlerProjection returns a projection that dispatches each event to the
// handler for its type and ignores types without a handler.
func HandlerProjection(name string, handlers Handlers) Projection {
	return ProjectionFunc(name, func(ctx context.Context, e Event) error {
		if h, ok := handlers[e.Type]; ok {
			return h(ctx, e)
		}
		return nil
	})
}

// JSONHandler adapts a handler of decoded payloads to a handler of events:
// it decodes e.Data as JSON into a T. A payload that does not decode is a
// [*DecodeError] naming the stream, the sequence and (through the wrapped
// json error) the field.
func JSONHandler[T any](fn func(ctx context.Context, e Event, payload T) error) func(context.Context, Event) error {
	return func(ctx context.Context, e Event) error {
		var payload T
		if err := json.Unmarshal(e.Data, &payload); err != nil {
			return &DecodeError{StreamID: e.StreamID, Sequence: e.Sequence, EventType: e.Type, Err: err}
		}
		return fn(ctx, e, payload)
	}
}
