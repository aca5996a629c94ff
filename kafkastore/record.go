package kafkastore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// Record header names. See the package documentation.
const (
	HeaderStreamID      = "projector.stream-id"
	HeaderSequence      = "projector.sequence"
	HeaderEventID       = "projector.event-id"
	HeaderType          = "projector.type"
	HeaderSchemaVersion = "projector.schema-version"
	HeaderRecordedAt    = "projector.recorded-at"
	HeaderMetaPrefix    = "projector.meta."
	// HeaderContract is the version of this header contract a record was
	// written with (ContractVersion by Store.Append). A record without it
	// is of version 1: the contract as it was before the header existed,
	// and what other producers write. A reader refuses a version newer
	// than its own (see docs/compatibility.md).
	HeaderContract = "projector.contract"
)

// ContractVersion is the header contract's version this package writes and
// the newest it reads.
const ContractVersion = 1

// encodeRecord builds the record of e for topic, with the trace context of
// ctx.
func (s *Store) encodeRecord(ctx context.Context, e framework.Event) *kgo.Record {
	r := &kgo.Record{
		Topic: s.cfg.Topic,
		Key:   []byte(e.StreamID),
		Value: e.Data,
		Headers: append(make([]kgo.RecordHeader, 0, 8+len(e.Metadata)),
			kgo.RecordHeader{Key: HeaderStreamID, Value: []byte(e.StreamID)},
			kgo.RecordHeader{Key: HeaderSequence, Value: strconv.AppendUint(nil, e.Sequence, 10)},
			kgo.RecordHeader{Key: HeaderEventID, Value: []byte(e.EventID)},
			kgo.RecordHeader{Key: HeaderType, Value: []byte(e.Type)},
			kgo.RecordHeader{Key: HeaderSchemaVersion, Value: strconv.AppendInt(nil, int64(e.SchemaVersion), 10)},
			kgo.RecordHeader{Key: HeaderRecordedAt, Value: e.RecordedAt.UTC().AppendFormat(nil, time.RFC3339Nano)},
			kgo.RecordHeader{Key: HeaderContract, Value: strconv.AppendInt(nil, ContractVersion, 10)},
		),
		Timestamp: e.RecordedAt,
	}
	for k, v := range e.Metadata {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderMetaPrefix + k, Value: []byte(v)})
	}
	r.Context = ctx
	if s.tracer == nil {
		// Without kotel, carry the caller's trace context ourselves; with
		// it, kotel injects its publish span's context.
		s.cfg.Propagator.Inject(ctx, kafkaio.HeaderCarrier{R: r})
	}
	return r
}

// DecodeRecord turns a record written by [Store.Append] (or by any producer
// following the header contract) into an event. It never panics; a missing
// or malformed header, or a key that differs from the stream-ID header, is a
// [*RecordError].
func DecodeRecord(r *kgo.Record) (framework.Event, error) {
	return decodeRecord(r, "")
}

// decodeRecord is DecodeRecord for a reader that knows the stream it
// reads: validID, a stream ID already validated, is taken for the
// event's stream ID when the header holds it, instead of validating and
// copying the header again for every record.
func decodeRecord(r *kgo.Record, validID string) (framework.Event, error) {
	fail := func(header, reason string) (framework.Event, error) {
		return framework.Event{}, &RecordError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Header: header, Reason: reason}
	}
	var (
		e                                                framework.Event
		seen                                             [7]bool
		streamID, seq, eventID, typ, sv, recAt, contract []byte
	)
	for _, h := range r.Headers {
		var slot *[]byte
		var i int
		switch h.Key {
		case HeaderStreamID:
			slot, i = &streamID, 0
		case HeaderSequence:
			slot, i = &seq, 1
		case HeaderEventID:
			slot, i = &eventID, 2
		case HeaderType:
			slot, i = &typ, 3
		case HeaderSchemaVersion:
			slot, i = &sv, 4
		case HeaderRecordedAt:
			slot, i = &recAt, 5
		case HeaderContract:
			slot, i = &contract, 6
		default:
			if k, ok := strings.CutPrefix(h.Key, HeaderMetaPrefix); ok && k != "" {
				if e.Metadata == nil {
					e.Metadata = make(map[string]string)
				}
				e.Metadata[k] = string(h.Value)
			}
			continue
		}
		if seen[i] {
			return fail(h.Key, "appears more than once")
		}
		seen[i] = true
		*slot = h.Value
	}
	if seen[6] {
		// First: a newer contract may have changed what the other headers
		// mean.
		v, err := strconv.ParseUint(string(contract), 10, 32)
		switch {
		case err != nil || v == 0:
			return fail(HeaderContract, strconv.Quote(string(contract))+" is not a contract version (a decimal from 1)")
		case v > ContractVersion:
			return fail(HeaderContract, fmt.Sprintf("version %d is newer than this version of Projector reads (up to %d): upgrade Projector before it reads this topic", v, ContractVersion))
		}
	}
	for i, name := range []string{HeaderStreamID, HeaderSequence, HeaderEventID, HeaderType} {
		if !seen[i] {
			return fail(name, "missing")
		}
	}
	if validID != "" && string(streamID) == validID {
		e.StreamID = validID
	} else {
		e.StreamID = string(streamID)
		if err := framework.ValidateStreamID(e.StreamID); err != nil {
			return fail(HeaderStreamID, err.Error())
		}
	}
	if string(r.Key) != e.StreamID {
		return fail(HeaderStreamID, "differs from the record key "+strconv.Quote(string(r.Key)))
	}
	n, err := strconv.ParseUint(string(seq), 10, 64)
	if err != nil || n == 0 {
		return fail(HeaderSequence, strconv.Quote(string(seq))+" is not a sequence (a decimal from 1)")
	}
	e.Sequence = n
	if len(eventID) == 0 || !utf8.Valid(eventID) {
		return fail(HeaderEventID, "empty or not UTF-8")
	}
	e.EventID = string(eventID)
	if !utf8.Valid(typ) {
		return fail(HeaderType, "not UTF-8")
	}
	e.Type = string(typ)
	if seen[4] {
		v, err := strconv.Atoi(string(sv))
		if err != nil || v < 0 {
			return fail(HeaderSchemaVersion, strconv.Quote(string(sv))+" is not a non-negative integer")
		}
		e.SchemaVersion = v
	}
	if seen[5] {
		t, err := time.Parse(time.RFC3339Nano, string(recAt))
		if err != nil {
			return fail(HeaderRecordedAt, strconv.Quote(string(recAt))+" is not an RFC 3339 time")
		}
		e.RecordedAt = t
	} else {
		e.RecordedAt = r.Timestamp
	}
	e.Data = r.Value
	e.Position = &framework.Position{Partition: r.Partition, Offset: r.Offset}
	return e, nil
}

// TraceContext extracts the W3C trace context the appending call left in
// r's headers, as a context for starting a linked span.
func (s *Store) TraceContext(ctx context.Context, r *kgo.Record) context.Context {
	return s.cfg.Propagator.Extract(ctx, kafkaio.HeaderCarrier{R: r})
}
