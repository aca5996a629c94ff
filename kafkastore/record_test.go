package kafkastore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
)

// TestMurmur2MatchesKafka checks the hash against the values of Kafka's own
// UtilsTest, so partitions agree with the Java clients.
func TestMurmur2MatchesKafka(t *testing.T) {
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for in, want := range cases {
		if got := int32(murmur2([]byte(in))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestPartitionForMatchesTheProducer checks PartitionFor against franz-go's
// partitioner as the store configures it.
func TestPartitionForMatchesTheProducer(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int{1, 3, 12, 100} {
		for _, id := range []string{"process/acme/1", "process/acme/51238696788/2026-03", "a", "ü/ä", strings.Repeat("x", 300)} {
			want := p.Partition(&kgo.Record{Key: []byte(id)}, n)
			if got := PartitionFor(id, int32(n)); int(got) != want {
				t.Errorf("PartitionFor(%q, %d) = %d, producer picks %d", id, n, got, want)
			}
		}
	}
}

func validRecord() *kgo.Record {
	return &kgo.Record{
		Topic: "events", Partition: 2, Offset: 41, Key: []byte("process/t/a"), Value: []byte(`{}`),
		Headers: []kgo.RecordHeader{
			{Key: HeaderStreamID, Value: []byte("process/t/a")},
			{Key: HeaderSequence, Value: []byte("7")},
			{Key: HeaderEventID, Value: []byte("e-7")},
			{Key: HeaderType, Value: []byte("Opened")},
			{Key: HeaderSchemaVersion, Value: []byte("2")},
			{Key: HeaderRecordedAt, Value: []byte("2026-11-27T10:00:00.123456789Z")},
		},
	}
}

func TestDecodeRecordNamesTheFault(t *testing.T) {
	e, err := DecodeRecord(validRecord())
	if err != nil || e.Sequence != 7 || e.SchemaVersion != 2 || e.RecordedAt.Nanosecond() != 123456789 || e.Position.Offset != 41 {
		t.Fatalf("DecodeRecord(valid) = %+v, %v", e, err)
	}
	tests := []struct {
		name   string
		mutate func(r *kgo.Record)
		header string
	}{
		{"missing sequence", func(r *kgo.Record) { r.Headers = r.Headers[:1] }, HeaderSequence},
		{"sequence not a number", func(r *kgo.Record) { r.Headers[1].Value = []byte("seven") }, HeaderSequence},
		{"sequence zero", func(r *kgo.Record) { r.Headers[1].Value = []byte("0") }, HeaderSequence},
		{"negative sequence", func(r *kgo.Record) { r.Headers[1].Value = []byte("-1") }, HeaderSequence},
		{"key differs", func(r *kgo.Record) { r.Key = []byte("process/t/b") }, HeaderStreamID},
		{"invalid stream", func(r *kgo.Record) { r.Headers[0].Value, r.Key = []byte("a//b"), []byte("a//b") }, HeaderStreamID},
		{"empty event ID", func(r *kgo.Record) { r.Headers[2].Value = nil }, HeaderEventID},
		{"bad schema version", func(r *kgo.Record) { r.Headers[4].Value = []byte("v2") }, HeaderSchemaVersion},
		{"bad time", func(r *kgo.Record) { r.Headers[5].Value = []byte("yesterday") }, HeaderRecordedAt},
		{"duplicate header", func(r *kgo.Record) { r.Headers = append(r.Headers, r.Headers[1]) }, HeaderSequence},
		{"contract not a number", func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderContract, Value: []byte("one")})
		}, HeaderContract},
		{"newer contract", func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderContract, Value: []byte("2")})
		}, HeaderContract},
	}
	for _, tt := range tests {
		r := validRecord()
		tt.mutate(r)
		_, err := DecodeRecord(r)
		re, ok := errors.AsType[*RecordError](err)
		if !ok || !errors.Is(err, ErrMalformedRecord) || re.Header != tt.header || re.Topic != "events" || re.Partition != 2 || re.Offset != 41 {
			t.Errorf("%s: error = %v, want a RecordError for header %s at events/2@41", tt.name, err, tt.header)
		}
	}
}

// The header contract carries a version: a record of this version or
// without one (older writers, other producers) decodes; a newer one is
// refused with an error that says so, before its other headers are read.
func TestDecodeRecordRefusesANewerContract(t *testing.T) {
	for _, v := range []string{"", "1"} {
		r := validRecord()
		if v != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderContract, Value: []byte(v)})
		}
		if _, err := DecodeRecord(r); err != nil {
			t.Errorf("contract %q: %v", v, err)
		}
	}
	r := validRecord()
	r.Headers[1].Value = []byte("a sequence of version 2")
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderContract, Value: []byte("2")})
	_, err := DecodeRecord(r)
	re, ok := errors.AsType[*RecordError](err)
	if !ok || re.Header != HeaderContract || !strings.Contains(err.Error(), "version 2 is newer than this version of Projector reads (up to 1)") {
		t.Errorf("a record of contract 2: %v", err)
	}
}

// FuzzDecodeRecord feeds arbitrary keys and header values to the decoder:
// it must never panic, and what it accepts must be a valid event.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("process/t/a", "process/t/a", "7", "e", "T", "2", "2026-11-27T10:00:00Z", "")
	f.Add("", "", "", "", "", "", "", "x")
	f.Add("k", "k", "18446744073709551616", "e", "T", "-3", "x", "y")
	f.Fuzz(func(t *testing.T, key, stream, seq, id, typ, sv, at, meta string) {
		r := &kgo.Record{Key: []byte(key), Headers: []kgo.RecordHeader{
			{Key: HeaderStreamID, Value: []byte(stream)},
			{Key: HeaderSequence, Value: []byte(seq)},
			{Key: HeaderEventID, Value: []byte(id)},
			{Key: HeaderType, Value: []byte(typ)},
			{Key: HeaderSchemaVersion, Value: []byte(sv)},
			{Key: HeaderRecordedAt, Value: []byte(at)},
			{Key: HeaderMetaPrefix + meta, Value: []byte(meta)},
		}}
		e, err := DecodeRecord(r)
		if err != nil {
			if _, ok := errors.AsType[*RecordError](err); !ok {
				t.Fatalf("error %T is not a *RecordError", err)
			}
			return
		}
		if e.StreamID != key || e.Sequence == 0 || e.EventID == "" {
			t.Fatalf("accepted %+v from key %q", e, key)
		}
	})
}

func TestAppendedRecordsCarryTheContractVersion(t *testing.T) {
	s := &Store{cfg: Config{Topic: "events", Propagator: propagation.TraceContext{}}}
	r := s.encodeRecord(context.Background(), framework.Event{StreamID: "process/t/a", Sequence: 1, EventID: "e1", Type: "T"})
	r.Partition, r.Offset = 0, 0
	if headerValue(r, HeaderContract) != "1" {
		t.Errorf("headers %v, want %s: 1", r.Headers, HeaderContract)
	}
	if _, err := DecodeRecord(r); err != nil {
		t.Errorf("an appended record does not decode: %v", err)
	}
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
