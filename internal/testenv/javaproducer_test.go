package testenv_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv"
)

// TestJavaProducerRoundTrip checks the Java producer's input protocol: explicit partitions,
// null keys and values, binary, empty and null header values, and the order of the reported
// placements.
func TestJavaProducerRoundTrip(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t)
	java := testenv.JavaProducer(t, k)
	topic := k.CreateTopic(t, "java", 3, nil)

	records := []testenv.JavaRecord{
		{Topic: topic, Key: []byte("k\t1\n"), Value: []byte("v1"), ManualPartition: true, Partition: 2,
			Headers: []kgo.RecordHeader{{Key: "bin", Value: []byte{0, 1, 0xfe, 0xff}}, {Key: "empty", Value: []byte{}}, {Key: "null"}}},
		{Topic: topic, Key: nil, Value: []byte("keyless"), ManualPartition: true, Partition: 0},
		{Topic: topic, Key: []byte("tombstone"), Value: nil, ManualPartition: true, Partition: 2},
		{Topic: topic, Key: []byte{}, Value: []byte{}, ManualPartition: true, Partition: 1,
			Headers: []kgo.RecordHeader{{Key: "ünïcode", Value: []byte("✓")}, {Key: "bin", Value: []byte("twice")}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	placed, err := java.Produce(ctx, records)
	if err != nil {
		t.Fatal(err)
	}
	wantPlaced := []testenv.Placed{{2, 0}, {0, 0}, {2, 1}, {1, 0}}
	for i, p := range placed {
		if p != wantPlaced[i] {
			t.Errorf("record %d placed at %+v, want %+v", i, p, wantPlaced[i])
		}
	}

	cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[testenv.Placed]*kgo.Record{}
	for len(got) < len(records) {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read back %d of %d records: %v", len(got), len(records), err)
		}
		for r := range fetches.RecordsAll() {
			got[testenv.Placed{Partition: r.Partition, Offset: r.Offset}] = r
		}
	}
	for i, want := range records {
		r := got[wantPlaced[i]]
		if r == nil {
			t.Errorf("record %d: nothing at %+v", i, wantPlaced[i])
			continue
		}
		if !nilEqual(r.Key, want.Key) || !nilEqual(r.Value, want.Value) {
			t.Errorf("record %d: key %q value %q, want %q %q", i, r.Key, r.Value, want.Key, want.Value)
		}
		if len(r.Headers) != len(want.Headers) {
			t.Errorf("record %d: headers %v, want %v", i, r.Headers, want.Headers)
			continue
		}
		for j, h := range r.Headers {
			if h.Key != want.Headers[j].Key || !nilEqual(h.Value, want.Headers[j].Value) {
				t.Errorf("record %d header %d: %q=%q, want %q=%q", i, j, h.Key, h.Value, want.Headers[j].Key, want.Headers[j].Value)
			}
		}
	}
}

// nilEqual is bytes.Equal that tells nil from empty, as Kafka does.
func nilEqual(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// TestJavaProducerFailure checks that a record the broker refuses fails Produce with the Java
// client's reason, quickly, and that the records before it are still reported.
func TestJavaProducerFailure(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t)
	java := testenv.JavaProducer(t, k)
	topic := k.CreateTopic(t, "java", 1, nil)
	// The wait for partition 5's metadata ends the produce; it must also
	// cover the first metadata fetch of the new topic on a loaded machine
	// (2 s did not, under the full test run).
	java.Properties = map[string]string{"max.block.ms": "8000"}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	placed, err := java.Produce(ctx, []testenv.JavaRecord{
		{Topic: topic, Key: []byte("a"), Value: []byte("ok")},
		{Topic: topic, Key: []byte("b"), Value: []byte("partition 5 of 1"), ManualPartition: true, Partition: 5},
		{Topic: topic, Key: []byte("c"), Value: []byte("never sent")},
	})
	if err == nil {
		t.Fatalf("Produce to partition 5 of a 1-partition topic succeeded: %v", placed)
	}
	t.Logf("Produce: %v", err)
	if !strings.Contains(err.Error(), "record 2") {
		t.Errorf("error does not name record 2: %v", err)
	}
	if len(placed) != 1 || placed[0] != (testenv.Placed{Partition: 0, Offset: 0}) {
		t.Errorf("placed %v, want the first record at 0/0 only", placed)
	}
}

// TestJavaProducerSASLSSL produces over the real broker's SASL_SSL listener with the Java
// client's own TLS (trusting the throw-away CA from a PEM file) and SCRAM.
func TestJavaProducerSASLSSL(t *testing.T) {
	t.Parallel()
	k, secure := secureListener(t)
	java := testenv.JavaProducer(t, k)
	topic := k.CreateTopic(t, "java", 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		placed, err := java.SASLSSL(secure, mech).Produce(ctx, []testenv.JavaRecord{
			{Topic: topic, Key: []byte(mech), Value: []byte("over TLS"), ManualPartition: true, Partition: 1},
		})
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if placed[0].Partition != 1 {
			t.Errorf("%s: placed %+v, want partition 1", mech, placed[0])
		}
	}
	// A wrong password must fail, or the test above proves nothing about SCRAM.
	wrong := *secure
	wrong.Password += "-wrong"
	if _, err := java.SASLSSL(&wrong, "SCRAM-SHA-512").Produce(ctx, []testenv.JavaRecord{
		{Topic: topic, Key: []byte("x"), Value: []byte("y")},
	}); err == nil {
		t.Fatal("Produce with a wrong SCRAM password succeeded")
	} else {
		t.Logf("wrong password: %v", err)
	}
}
