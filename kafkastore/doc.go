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
//	traceparent, tracestate   the W3C trace context of the appending call
//
// [DecodeRecord] turns a record back into an event. It never panics: a
// missing or malformed header is a [*RecordError] naming the topic,
// partition, offset and header.
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
// Kafka has no compare-and-set. Append enforces the expected version
// (no stream, exact, any) within one Store, serialising appends per stream,
// so the rule is: one writer per stream. Two Stores appending to the same
// stream can both succeed and produce a duplicate sequence; that violation
// never reaches a read model, because the consumer-group runner parks a
// stream whose sequence repeats with a different event ID as a conflict.
//
// Appends use the idempotent producer with acknowledgement from all in-sync
// replicas and return only when every record is acknowledged. A failed
// append may have written a prefix of its events; the Store then re-reads
// the stream's head from the topic before the next append to that stream.
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
