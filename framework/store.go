package framework

import (
	"context"
	"iter"
	"strconv"
)

// EventStore holds streams of events. Implementations: package memstore (in
// memory) and package kafkastore (a Kafka topic). Every implementation passes
// the conformance suite in package eventstoretest.
//
// All methods are safe for concurrent use. ctx bounds each call; an
// iterator stops with ctx's error when ctx is cancelled.
type EventStore interface {
	// Append adds events to the end of streamID if the stream's version
	// matches expected, and returns them as recorded (stream ID, sequences
	// from version+1 on, event IDs, recording time, position). On a
	// mismatch it appends nothing and returns a [*VersionConflictError].
	// Appending no events checks the expectation only.
	Append(ctx context.Context, streamID string, expected ExpectedVersion, events []EventData) ([]Event, error)

	// ReadStream yields the events of streamID with a sequence above
	// after, in order, and stops at the stream's head as of the call. An
	// unknown stream yields nothing. Implementations keep memory bounded by
	// a batch, never by the length of the stream. After an error the
	// iterator stops.
	ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[Event, error]

	// ListStreams yields the IDs of every stream that starts with prefix, in
	// ascending order. The prefix is checked with [ValidatePrefix].
	ListStreams(ctx context.Context, prefix string) iter.Seq2[string, error]

	// StreamVersion returns the sequence of the stream's last event, or 0
	// for a stream that does not exist.
	StreamVersion(ctx context.Context, streamID string) (uint64, error)
}

// ExpectedVersion is the precondition of an append. The zero value is
// [AnyVersion].
type ExpectedVersion struct {
	kind    expectKind
	version uint64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExact
)

var (
	// AnyVersion appends whatever the stream's version.
	AnyVersion = ExpectedVersion{kind: expectAny}
	// NoStream appends only to a stream that has no events yet.
	NoStream = ExpectedVersion{kind: expectNoStream}
)

// ExactVersion appends only when the stream's last sequence is v.
// ExactVersion(0) is the same as [NoStream].
func ExactVersion(v uint64) ExpectedVersion {
	if v == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: expectExact, version: v}
}

// Check reports whether a stream at version actual meets the expectation.
func (v ExpectedVersion) Check(actual uint64) bool {
	switch v.kind {
	case expectNoStream:
		return actual == 0
	case expectExact:
		return actual == v.version
	default:
		return true
	}
}

// Exact returns the version an exact expectation names (0 for
// [NoStream]) and true, or 0 and false for [AnyVersion].
func (v ExpectedVersion) Exact() (uint64, bool) {
	switch v.kind {
	case expectNoStream:
		return 0, true
	case expectExact:
		return v.version, true
	default:
		return 0, false
	}
}

// String returns "any", "no stream" or the exact version.
func (v ExpectedVersion) String() string {
	switch v.kind {
	case expectNoStream:
		return "no stream"
	case expectExact:
		return "version " + strconv.FormatUint(v.version, 10)
	default:
		return "any"
	}
}

// ProjectionCheckpointStore keeps named [GlobalProjectionCheckpoint]s, one
// per projection name. Implementations: package memstore and package
// redischeckpoint. Every implementation passes the conformance suite in
// package checkpointtest.
//
// All methods are safe for concurrent use; ctx bounds each call.
type ProjectionCheckpointStore interface {
	// Load returns the checkpoint stored under name, or an empty
	// checkpoint (not an error) when none is stored.
	Load(ctx context.Context, name string) (*GlobalProjectionCheckpoint, error)

	// Save replaces the checkpoint stored under name with cp.
	Save(ctx context.Context, name string, cp *GlobalProjectionCheckpoint) error

	// Advance raises the given cursors of the checkpoint stored under name,
	// atomically, leaving every other cursor alone. A cursor that would
	// move backwards keeps its stored value. Only moved cursors need be
	// passed (see [GlobalProjectionCheckpoint.MovedSince]).
	Advance(ctx context.Context, name string, cursors map[string]uint64) error

	// Delete removes the checkpoint stored under name; deleting a missing
	// checkpoint is not an error.
	Delete(ctx context.Context, name string) error

	// Names returns the names of the stored checkpoints, in ascending order.
	Names(ctx context.Context) ([]string, error)
}

// StreamCursor names a stream to read and the sequence to read it after.
type StreamCursor struct {
	StreamID string
	After    uint64
}

// MultiStreamReader is an optional capability of an [EventStore]: reading
// many streams in one pass, for a store where reading them one by one costs
// more than reading them together (package kafkastore reads each partition
// of its topic once instead of once per stream). [ProjectionRunner]'s
// multi-stream entry points use it when the store has it; the Result and
// the errors of a run are the same with or without it.
//
// ReadStreams yields, for every listed stream, exactly the events
// ReadStream(ctx, StreamID, After) would yield, in the same order, each
// stream stopping at its head as of the call. Events of different streams
// interleave in any order: order holds within a stream, never across
// streams.
//
// A failure that ReadStream would end one stream with (a gap, a fork, a
// record that does not decode, a stream on the wrong partition, a read
// error of the part of the store holding it) is yielded as a
// [*StreamError] whose StreamID names the stream and whose Err is the
// error ReadStream would yield; the stream yields nothing after it, and
// the other streams go on. Any other error (ctx's, a closed store, a
// failure that leaves no stream readable) ends the iteration; the events
// yielded before it stay valid.
//
// The caller lists each stream once, with a valid ID
// ([ValidateStreamID]). A stream the store does not hold yields nothing.
// Memory is bounded by the store's read batch plus a small state per
// listed stream, never by the length of a stream or of the store. The
// iterator is used by one goroutine; ctx bounds the whole pass.
type MultiStreamReader interface {
	ReadStreams(ctx context.Context, streams []StreamCursor) iter.Seq2[Event, error]
}
