package kafkastore

import (
	"errors"
	"fmt"

	"github.com/projector-dev/projector/framework"
)

var (
	// ErrMalformedRecord reports a record whose headers do not describe an
	// event. See [RecordError].
	ErrMalformedRecord = errors.New("kafkastore: malformed record")

	// ErrTopicSettings reports an existing topic whose settings would lose
	// events or move streams between partitions. See [TopicError].
	ErrTopicSettings = errors.New("kafkastore: wrong topic settings")

	// ErrNotAuthorized reports a missing Kafka permission, such as creating
	// a topic. See [TopicError].
	ErrNotAuthorized = errors.New("kafkastore: not authorized")

	// ErrClosed is returned by a Store after Close.
	ErrClosed = errors.New("kafkastore: store closed")

	// ErrMisplaced reports a stream whose records are not all where the
	// Store reads or appends them: on a partition other than the murmur2
	// partition of its key, on several partitions, short of the head the
	// catalog records, or with a gap in their sequences. A producer whose
	// partitioner is not murmur2 of the key leaves streams so. See
	// [PlacementError].
	ErrMisplaced = errors.New("kafkastore: stream records misplaced")

	// ErrNoGuard reports an Append by a Store configured with neither
	// [Config.Guard] nor [Config.SingleWriter].
	ErrNoGuard = errors.New("kafkastore: Append needs Config.Guard (a registry shared by every writer process), " +
		"or Config.SingleWriter when this Store is the topic's only writer")

	// ErrAppendUncertain reports an append whose transaction may or may
	// not have committed: the broker did not confirm the commit and the
	// Store could not find out. The next append to the stream resolves it
	// (at most [Config.AppendLease] later); read the stream to learn the
	// outcome, by the event IDs.
	ErrAppendUncertain = errors.New("kafkastore: append outcome unknown")

	// ErrNotWritten reports an append that wrote nothing: its transaction
	// was aborted (its lease ended and another writer fenced it, the broker
	// failed it, or the registry refused it). Retrying it is safe.
	ErrNotWritten = errors.New("kafkastore: append not written")

	// ErrForked reports a stream holding two different events with one
	// sequence: written by two producers that did not share a guard. See
	// [ForkError].
	ErrForked = errors.New("kafkastore: stream forked")
)

// RecordError names a record that could not be decoded and why.
type RecordError struct {
	Topic     string
	Partition int32
	Offset    int64
	Header    string // the header at fault, or "" for the key or value
	Reason    string
}

func (e *RecordError) Error() string {
	where := fmt.Sprintf("kafkastore: topic %s partition %d offset %d", e.Topic, e.Partition, e.Offset)
	if e.Header != "" {
		return fmt.Sprintf("%s: header %s: %s", where, e.Header, e.Reason)
	}
	return fmt.Sprintf("%s: %s", where, e.Reason)
}

// Is reports whether target is [ErrMalformedRecord].
func (e *RecordError) Is(target error) bool { return target == ErrMalformedRecord }

// TopicError names a topic that cannot be used as configured.
type TopicError struct {
	Topic  string
	Reason string
	// Err is ErrTopicSettings or ErrNotAuthorized, possibly wrapping the
	// broker's error.
	Err error
}

func (e *TopicError) Error() string {
	return fmt.Sprintf("kafkastore: topic %s: %s", e.Topic, e.Reason)
}

// Unwrap returns the kind of failure.
func (e *TopicError) Unwrap() error { return e.Err }

// PlacementError names a stream that a read or an append refused because
// its records are not where the Store needs them, and what is wrong (the
// embedded [Anomaly]). It matches [ErrMisplaced]; a gap also matches
// [framework.ErrSequenceGap].
type PlacementError struct {
	Op string // "read" or "append"
	Anomaly
	written bool // the append stored its events before it found the split
}

func (e *PlacementError) Error() string {
	return fmt.Sprintf("kafkastore: %s %s: %s", e.Op, e.Anomaly.String(), e.cause())
}

// cause says why the anomaly arises and what to do, for Error.
func (e *PlacementError) cause() string {
	const foreign = "a producer whose partitioner is not murmur2 of the key " +
		"(Sarama's default FNV-1a hash, kafka-go's round robin, librdkafka's default consistent_random)"
	switch {
	case e.Kind == AnomalySplit && e.written:
		return "the events went to another partition than the stream's earlier ones: the topic's partition count changed since the stream began"
	case e.Kind == AnomalySplit && e.Op == "append":
		return fmt.Sprintf("refusing to append: the events would go to partition %d; %s wrote it, "+
			"or the topic's partition count changed since it began (see docs/kafkastore.md)", e.ExpectedPartition, foreign)
	case e.Kind == AnomalySplit:
		return "reading one partition would return part of the stream; " + foreign + " wrote it (see docs/kafkastore.md)"
	case e.Kind == AnomalyOffHome:
		return fmt.Sprintf("refusing to append: the events would go to partition %d and split the stream; %s wrote it, "+
			"or the topic's partition count changed since it began (see docs/kafkastore.md)", e.ExpectedPartition, foreign)
	case e.Kind == AnomalyGap:
		return "the missing events were never written, or " + foreign + " put them on another partition; `projectorctl catalog rebuild` tells which"
	case e.Kind == AnomalyMissing:
		return "the catalog belongs to another incarnation of the topic, the records were deleted, or they are on another partition " +
			"(`projectorctl catalog rebuild` tells)"
	}
	return foreign + " wrote it"
}

// Is reports whether target is [ErrMisplaced], or for a gap
// [framework.ErrSequenceGap].
func (e *PlacementError) Is(target error) bool {
	return target == ErrMisplaced || (e.Kind == AnomalyGap && target == framework.ErrSequenceGap)
}

// ForkError names a sequence of a stream that two different events hold.
// It matches [ErrForked] and [framework.ErrVersionConflict].
type ForkError struct {
	StreamID  string
	Sequence  uint64
	Partition int32
	// FirstEventID is the event at FirstOffset, which readers saw first;
	// OtherEventID the one at OtherOffset, which repeats its sequence.
	FirstEventID, OtherEventID string
	FirstOffset, OtherOffset   int64
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("kafkastore: stream %s is forked at sequence %d: event %s (partition %d offset %d) and event %s (offset %d) "+
		"both hold it; they were appended by writers that did not share a guard (Config.Guard)",
		e.StreamID, e.Sequence, e.FirstEventID, e.Partition, e.FirstOffset, e.OtherEventID, e.OtherOffset)
}

// Is reports whether target is [ErrForked] or [framework.ErrVersionConflict].
func (e *ForkError) Is(target error) bool {
	return target == ErrForked || target == framework.ErrVersionConflict
}
