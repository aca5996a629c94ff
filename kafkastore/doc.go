// Package kafkastore keeps event streams in Kafka (franz-go): an
// [framework.EventStore] on a topic keyed by stream ID, with a compacted
// catalog topic of the streams it holds.
//
// # Records
//
// One topic carries a family of streams. Each event is one record whose key
// is the stream ID. The store's producer puts it on the murmur2 partition of
// the key ([PartitionFor]: murmur2 of the key, made positive, modulo the
// partition count), as the Java client's default partitioner does, so a
// stream stays in one partition and in order. Only producers that partition
// the same way agree with it on where a stream lives; see Other producers.
// The value is the event's payload; the headers carry the envelope:
//
//	projector.stream-id       the stream ID (equal to the key)
//	projector.sequence        the sequence in the stream, decimal, from 1
//	projector.event-id        the event ID
//	projector.type            the event type
//	projector.schema-version  decimal
//	projector.recorded-at     RFC 3339 with nanoseconds, UTC
//	projector.meta.<key>      one per metadata entry
//	projector.contract        the version of this contract, 1 ([ContractVersion]); absent: 1
//	traceparent, tracestate   the W3C trace context of the appending call
//
// [DecodeRecord] turns a record back into an event. It never panics: a
// missing or malformed header is a [*RecordError] naming the topic,
// partition, offset and header, and so is a record of a newer contract
// version than [ContractVersion] (see docs/compatibility.md).
//
// # Catalog
//
// A compacted topic (by default "<topic>.catalog") holds one record per
// stream, keyed by stream ID, whose JSON value is the stream's partition,
// first offset, head sequence and head offset. ListStreams reads it;
// ReadStream uses it to seek to the stream's first offset instead of
// scanning the partition, and reads on to the partition's end as of the
// call, so events written after the catalog entry (its write failed, or
// another producer appended) are not missed. For a stream the catalog
// lacks, ReadStream, StreamVersion and Append first find its records on
// every partition of the event topic, from an index of where each key's
// records are that a Store builds by reading the whole topic at its first
// such call and keeps up to date by reading only what was added since; a
// stream the catalog knows never costs that. [Store.RebuildCatalog]
// rebuilds the catalog by scanning the event topic, for topics written by
// other producers that follow the header contract.
//
// [Store.ReadStreams] reads many streams in one pass, each partition once
// from the lowest offset one of them needs, with the checks and errors of
// ReadStream per stream; the runner's multi-stream entry points use it.
// ReadStream of one stream reads every record of its partition from the
// stream's first one on: see docs/kafkastore.md for both costs.
//
// # Other producers
//
// Records written by other producers are events when they follow the
// header contract and land where the store looks: on the murmur2
// partition of the key. Compatible: franz-go's default partitioner, the
// Java client's default partitioner, librdkafka (and kcat,
// confluent-kafka-go/-python) with partitioner=murmur2_random or murmur2,
// Sarama with Config.Producer.Partitioner = sarama.NewMurmur2Partitioner,
// segmentio/kafka-go with Writer.Balancer = &kafka.Murmur2Balancer{}. Not
// compatible: Sarama's default (FNV-1a hash), kafka-go's default (round
// robin), librdkafka's default (consistent_random, CRC32), any random or
// round-robin partitioner.
//
// The catalog knows only what Append wrote: after other producers wrote
// streams, run [Store.RebuildCatalog] (projectorctl catalog rebuild) for
// ListStreams to list them. The rebuild reports a stream on another
// partition than its key's as an [Anomaly] (split over several partitions,
// or off-home: wholly on one other partition) and marks its catalog entry.
// Without a rebuild the store finds such a stream all the same, as it
// looks for a stream the catalog lacks on every partition. ReadStream
// reads an off-home stream where it is and refuses a split one; Append
// refuses both, as its events would go to the key's partition and split
// the stream; both errors are a [*PlacementError] matching
// [ErrMisplaced]. ReadStream also refuses, with the same error, to end a
// stream early: a gap in the sequences it reads, or a catalog head its
// partition does not hold. Append to a stream another producer wrote on
// its key's partition checks the expected version against the stream's
// highest sequence there, as for its own streams.
//
// # Writers
//
// Kafka has no compare-and-set, so expected versions need help to hold
// across writer processes. Every Store that appends shares a registry,
// [Config.Guard] (redischeckpoint.AppendRegistry on Redis), that keeps each
// stream's head and at most one reservation of its next sequences, for a
// lease ([Config.AppendLease]). An append reserves its sequences there
// (the expected version is checked against the registered head, so at
// most one of several racing appends succeeds; the others get a
// [*framework.VersionConflictError] with the current version), writes its
// events and the stream's catalog entry in one Kafka transaction of the
// Store's producer (transactional ID [Config.WriterID]), records their
// offsets in the registry, commits, waits until the records are readable,
// and moves the registered head. Appends of one Store that arrive while a
// transaction is in flight share the next one.
//
// A writer killed, frozen or cut off between any two steps leaves a
// reservation whose lease ends. The next append to the stream repairs it:
// it fences the reservation's producer (Kafka aborts its open transaction,
// or completes one whose commit it had accepted, and refuses anything
// later from it), reads the recorded offsets to see whether the records
// are committed, and resolves the reservation as written or not. An
// append therefore either is in the stream in full, counted in the head,
// or is not there at all; a woken writer's late commit is refused, and it
// reports [ErrNotWritten]. An append whose commit the broker did not
// confirm is resolved the same way at once, or reported as
// [ErrAppendUncertain].
//
// Streams the registry does not know yet (new ones, and streams written
// before the registry or by other producers) are registered with their
// head read from the topic at their first guarded append. Records written
// later by producers that do not share the registry are not seen by it: a
// sequence they repeat is a fork. ReadStream and StreamVersion report a
// fork already in a topic (two events with one sequence) as a
// [*ForkError] naming the stream, the sequence and both event IDs; a
// record that repeats an event (same ID) is passed over.
//
// [Config.SingleWriter] runs Append without a registry or transactions,
// checking expected versions inside the Store only: correct when it is the
// topic's only writer, in every process.
//
// A failed append may have written a prefix of its events only with
// SingleWriter; under a guard its transaction is aborted whole.
//
// # Topics
//
// [New] creates missing topics (the event topic with unlimited retention,
// the catalog compacted) and refuses existing ones with settings that would
// lose events or move streams: a compacted event topic, a finite retention
// (unless allowed), a partition count other than the configured one, or a
// catalog that is not compacted. Missing permission to create a topic is a
// clear error naming the topic and the settings an admin should use.
//
// # Security
//
// Every franz-go option passes through [Config.ClientOpts]; [Security]
// builds the options for SASL PLAIN, SCRAM-SHA-256/512 and TLS.
package kafkastore
