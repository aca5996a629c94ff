package kafkastore_test

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// javaStreamIDs returns n valid stream IDs of every length modulo 4 (murmur2's tail cases),
// with multi-byte UTF-8 and the usual process/{tenant}/{process} shape.
func javaStreamIDs(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		switch i % 6 {
		case 0:
			ids[i] = fmt.Sprintf("process/tenant-%d/order-%d", i%5, i)
		case 1:
			ids[i] = strings.Repeat("x", i/6+1)
		case 2:
			ids[i] = fmt.Sprintf("process/café/ü-%d", i)
		case 3:
			ids[i] = fmt.Sprintf("流水/%d", i)
		case 4:
			ids[i] = fmt.Sprintf("process/🚚/shipment/%d", i)
		default:
			ids[i] = "p/" + strconv.Itoa(i*7919)
		}
		if err := framework.ValidateStreamID(ids[i]); err != nil {
			t.Fatalf("test data: %v", err)
		}
	}
	return ids
}

// TestJavaProducerPlacement produces keyed records with the official Java producer
// (kafka-clients, default partitioner) and checks that each landed on the partition
// kafkastore.PartitionFor computes for its stream, and that records a foreign producer writes
// with our header contract decode to the events it meant.
func TestJavaProducerPlacement(t *testing.T) {
	t.Parallel()
	env := testenv.Kafka(t)
	java := testenv.JavaProducer(t, env)
	const partitions, total = 6, 200
	topic := env.CreateTopic(t, "java", partitions, nil)

	streams := javaStreamIDs(t, 120)
	recordedAt := time.Date(2025, 11, 28, 12, 0, 0, 123456789, time.UTC)
	want := make([]framework.Event, total)
	records := make([]testenv.JavaRecord, total)
	for j := range total {
		e := framework.Event{
			StreamID:      streams[j%len(streams)],
			Sequence:      uint64(j/len(streams) + 1),
			EventID:       fmt.Sprintf("java-%03d", j),
			Type:          "order.placed",
			SchemaVersion: 2,
			Data:          fmt.Appendf(nil, `{"n":%d}`, j),
			Metadata:      map[string]string{"producer": "kafka-clients", "n": strconv.Itoa(j)},
			RecordedAt:    recordedAt.Add(time.Duration(j) * time.Millisecond),
		}
		want[j] = e
		records[j] = testenv.JavaRecord{
			Topic: topic,
			Key:   []byte(e.StreamID),
			Value: e.Data,
			Headers: []kgo.RecordHeader{
				{Key: kafkastore.HeaderStreamID, Value: []byte(e.StreamID)},
				{Key: kafkastore.HeaderSequence, Value: strconv.AppendUint(nil, e.Sequence, 10)},
				{Key: kafkastore.HeaderEventID, Value: []byte(e.EventID)},
				{Key: kafkastore.HeaderType, Value: []byte(e.Type)},
				{Key: kafkastore.HeaderSchemaVersion, Value: strconv.AppendInt(nil, int64(e.SchemaVersion), 10)},
				{Key: kafkastore.HeaderRecordedAt, Value: e.RecordedAt.AppendFormat(nil, time.RFC3339Nano)},
				{Key: kafkastore.HeaderMetaPrefix + "producer", Value: []byte("kafka-clients")},
				{Key: kafkastore.HeaderMetaPrefix + "n", Value: []byte(strconv.Itoa(j))},
				// Not ours: ignored by DecodeRecord.
				{Key: "x-foreign", Value: []byte{0, 0xff}},
			},
		}
	}

	ctx := ctxFor(t)
	start := time.Now()
	placed, err := java.Produce(ctx, records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Java producer wrote %d records in %v (JVM start included)", len(placed), time.Since(start).Round(time.Millisecond))

	used := make(map[int32]int)
	at := make(map[framework.Position]int, total) // where each record is, to its index
	for j, p := range placed {
		if wantP := kafkastore.PartitionFor(want[j].StreamID, partitions); p.Partition != wantP {
			t.Errorf("record %d, stream %q: the Java producer put it on partition %d, PartitionFor says %d",
				j, want[j].StreamID, p.Partition, wantP)
		}
		used[p.Partition]++
		at[framework.Position{Partition: p.Partition, Offset: p.Offset}] = j
	}
	if len(used) != partitions {
		t.Errorf("records landed on %d of %d partitions (%v): the placement check proves little", len(used), partitions, used)
	}
	if len(at) != total {
		t.Fatalf("the Java producer reported %d distinct positions for %d records", len(at), total)
	}

	cl := env.Client(t, consumeFromStart(topic)...)
	got := 0
	for got < total {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read back %d of %d records: %v", got, total, err)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs)
		}
		for r := range fetches.RecordsAll() {
			got++
			pos := framework.Position{Partition: r.Partition, Offset: r.Offset}
			j, ok := at[pos]
			if !ok {
				t.Errorf("record at %v is none the Java producer reported", pos)
				continue
			}
			e, err := kafkastore.DecodeRecord(r)
			if err != nil {
				t.Errorf("record %d at %v: DecodeRecord: %v", j, pos, err)
				continue
			}
			w := want[j]
			if e.StreamID != w.StreamID || e.Sequence != w.Sequence || e.EventID != w.EventID || e.Type != w.Type ||
				e.SchemaVersion != w.SchemaVersion || !e.RecordedAt.Equal(w.RecordedAt) || !bytes.Equal(e.Data, w.Data) ||
				!maps.Equal(e.Metadata, w.Metadata) {
				t.Errorf("record %d at %v decodes to\n  %+v\nwant\n  %+v", j, pos, e, w)
			}
			if e.Position == nil || *e.Position != pos {
				t.Errorf("record %d: Position %v, want %v", j, e.Position, pos)
			}
		}
	}
	t.Logf("records per partition: %v", used)
}
