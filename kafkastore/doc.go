// Package kafkastore keeps event streams in Kafka (franz-go): an
// [framework.EventStore] on a topic keyed by stream ID, with a compacted
// catalog topic of the streams it holds.
//
// # Records
//
// One topic carries a family of streams. Each event is one record whose key
// is the stream ID, so Kafka's default partitioner (murmur2, as in the Java
// clients) keeps a stream in one partition and in order, and any Kafka
// client agrees on where a stream lives. The value is the event's payload;
// the headers carry the envelope:
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
// scanning the partition, and stops at the head the catalog knew when the
// call began. [Store.RebuildCatalog] rebuilds it by scanning the event topic,
// for topics written by other producers that follow the header contract.
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
