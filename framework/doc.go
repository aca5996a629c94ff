// Package framework holds Projector's core model and its in-process driver.
//
// A projection turns the events of many streams into a read model. Projector
// feeds it events one stream at a time, in sequence order, and records how
// far each stream has been applied in a [GlobalProjectionCheckpoint]: one
// cursor (the last applied sequence) per stream. The cursors are what make
// delivery "at least once, effect exactly once":
//
//   - Order holds within a stream, never across streams.
//   - An event at or below its stream's cursor is a duplicate: it is skipped
//     and counted, never applied twice.
//   - An event above cursor+1 is a gap: it is an error naming the stream and
//     both sequences, never skipped silently.
//   - An event that repeats an applied sequence under another event ID is a
//     conflict ([SequenceConflictError]): the stream stops there. (A runner
//     recognises it among the last events it applied of the stream,
//     [RecentEvents]; the Kafka runner also against the stored head.)
//   - A projection error or panic stops that stream; the returned checkpoint
//     covers exactly the events applied before it, so a retry resumes there.
//
// The cursors must be stored together with the read model they describe.
// Read models in Redis get an atomic transaction for writes and cursors from
// package redischeckpoint; other stores track their own cursor (a
// [SequenceTracker]) in their own transaction.
//
// The interfaces that the rest of Projector implements live here:
// [Projection] (with optional capabilities [SequenceTracker], [Resetter] and
// [BatchApplier], found by type assertion), [EventStore] and
// [ProjectionCheckpointStore]. Package framework/memstore implements the
// stores in memory; framework/eventstoretest and framework/checkpointtest are
// the conformance suites every implementation runs.
//
// [ProjectionRunner] drives projections in-process: over a slice of events,
// over one stored stream, over a list of streams, over every stream with an
// ID prefix, and as a persistent catch-up that loads and saves a named
// checkpoint. The Kafka consumer-group runner in package kafkarunner builds on
// the same types and the same delivery rules: [Classify], [ApplyEvents]
// (batches, panics, the batch count rule), [RecentEvents] and
// [ErrPermanent].
//
// Stream IDs are hierarchical, conventionally "process/{tenant}/{process}".
// [TenantPrefix] builds the prefix of one tenant's streams and rejects tenant
// IDs that could reach another tenant's streams.
//
// This package imports no Kafka, Redis or OpenTelemetry package.
package framework
