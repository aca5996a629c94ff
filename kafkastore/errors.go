package kafkastore

import (
	"errors"
	"fmt"
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
