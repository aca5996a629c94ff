package kafkastore_test

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// The tests here write streams with other producers than the store's own,
// each with its default partitioner, through real clients against the real
// broker: Sarama (FNV-1a hash of the key), segmentio/kafka-go (round robin)
// and franz-go (murmur2, as the store).

// placementStore is newStore on a real broker: the foreign clients are
// the point of these tests, and kfake is no evidence of how they place
// records. Under PROJECTOR_REQUIRE_REAL=1 testenv.Kafka fails the test
// instead of handing out the fake, so it never skips there.
func placementStore(t *testing.T) (*kafkastore.Store, *testenv.KafkaEnv) {
	t.Helper()
	if env := testenv.Kafka(t); !env.Real {
		t.Skip("placement tests run foreign producers against a real Kafka; set PROJECTOR_KAFKA_SEEDS (scripts/infra.sh)")
	}
	return newStore(t, kafkastore.Config{Partitions: 3})
}

// readAll reads stream after after and returns the sequences yielded and
// the error that ended the iteration.
func readAll(ctx context.Context, s *kafkastore.Store, stream string, after uint64) ([]uint64, error) {
	var seqs []uint64
	for e, err := range s.ReadStream(ctx, stream, after) {
		if err != nil {
			return seqs, err
		}
		seqs = append(seqs, e.Sequence)
	}
	return seqs, nil
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// placementError returns err as a *PlacementError matching ErrMisplaced,
// failing the test otherwise.
func placementError(t *testing.T, err error) *kafkastore.PlacementError {
	t.Helper()
	pe, ok := errors.AsType[*kafkastore.PlacementError](err)
	if !ok || !errors.Is(err, kafkastore.ErrMisplaced) {
		t.Fatalf("error %v (%T) is not a *PlacementError matching ErrMisplaced", err, err)
	}
	return pe
}

// anomaliesOf returns the report's anomalies of stream.
func anomaliesOf(rep kafkastore.RebuildReport, stream string) []kafkastore.Anomaly {
	var out []kafkastore.Anomaly
	for _, a := range rep.Anomalies {
		if a.StreamID == stream {
			out = append(out, a)
		}
	}
	return out
}

// TestSplitStreamIsReportedAndNotReadPartially: kafka-go's default
// balancer spreads one stream over every partition. ReadStream must not
// return part of it without an error, and a rebuild reports each partition
// off the key's murmur2 partition.
func TestSplitStreamIsReportedAndNotReadPartially(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	const stream = "process/kafkago/split"
	home := kafkastore.PartitionFor(stream, 3)
	produceKafkaGo(t, env, topic, nil, stream, 1, 2, 3, 4, 5, 6)
	truth := recordsOf(t, env, topic, stream)
	if len(truth) != 6 {
		t.Fatalf("kafka-go wrote %d records of %s, want 6: %+v", len(truth), stream, truth)
	}
	// Where the records are: first offset and count per partition.
	first, count := map[int32]int64{}, map[int32]int64{}
	for _, r := range truth {
		if _, ok := first[r.Partition]; !ok {
			first[r.Partition] = r.Offset
		}
		count[r.Partition]++
	}
	partitions := slices.Sorted(maps.Keys(first))
	if len(partitions) < 2 {
		t.Fatalf("round robin put every record on partition %v", partitions)
	}

	// The catalog does not know the stream: ReadStream looks for it on
	// every partition and refuses it as split, yielding nothing.
	seqs, err := readAll(ctx, s, stream, 0)
	if err == nil {
		t.Fatalf("ReadStream of a stream split by round robin returned %v and no error", seqs)
	}
	pe := placementError(t, err)
	if pe.StreamID != stream || pe.Kind != kafkastore.AnomalySplit || len(seqs) != 0 || pe.ExpectedPartition != home {
		t.Errorf("ReadStream = %v, %+v; want no event and a split error naming home partition %d", seqs, pe, home)
	}
	t.Logf("before the rebuild: %v after %v", err, seqs)

	rep, err := s.RebuildCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []kafkastore.Anomaly
	for _, p := range partitions {
		if p != home {
			want = append(want, kafkastore.Anomaly{Kind: kafkastore.AnomalySplit, StreamID: stream, Partition: p, Offset: first[p],
				ExpectedPartition: home, Partitions: partitions, Records: count[p]})
		}
	}
	got := anomaliesOf(rep, stream)
	if !slices.EqualFunc(got, want, anomalyEqual) || rep.AnomalyCount != len(want) || rep.Misplaced != 1 || rep.Streams != 1 || rep.Records != 6 {
		t.Errorf("rebuild report %+v\nanomalies %+v\nwant      %+v", rep, got, want)
	}
	for _, a := range got {
		t.Logf("anomaly: %v", a)
	}
	if e, _, _ := s.Entry(ctx, stream); e.Placement != kafkastore.AnomalySplit || e.HeadSequence != 6 {
		t.Errorf("catalog entry %+v, want placement split and head 6", e)
	}

	seqs, err = readAll(ctx, s, stream, 0)
	if len(seqs) != 0 || err == nil {
		t.Fatalf("ReadStream of a stream the catalog knows is split = %v, %v; want no events and an error", seqs, err)
	}
	if pe := placementError(t, err); pe.Kind != kafkastore.AnomalySplit || pe.StreamID != stream {
		t.Errorf("ReadStream error %+v, want a split of %s", pe, stream)
	}
	t.Logf("after the rebuild: %v", err)
	_, err = s.Append(ctx, stream, framework.AnyVersion, []framework.EventData{{Type: "Counted"}})
	if pe := placementError(t, err); pe.Kind != kafkastore.AnomalySplit {
		t.Errorf("Append error %+v, want a split", pe)
	}
	if n := len(recordsOf(t, env, topic, stream)); n != 6 {
		t.Errorf("the topic holds %d records of %s after the refused append, want 6", n, stream)
	}
}

func anomalyEqual(a, b kafkastore.Anomaly) bool {
	return a.Kind == b.Kind && a.StreamID == b.StreamID && a.Partition == b.Partition && a.Offset == b.Offset &&
		a.ExpectedPartition == b.ExpectedPartition && slices.Equal(a.Partitions, b.Partitions) && a.Records == b.Records &&
		a.Sequence == b.Sequence && a.Previous == b.Previous
}

// TestAppendRefusesStreamOnAnotherPartition: Sarama's default partitioner
// (FNV-1a) puts a stream wholly on a partition that is not its key's
// murmur2 partition. The rebuild reports it, ReadStream reads it where it
// is, and Append refuses it, naming the cause, without writing anything.
func TestAppendRefusesStreamOnAnotherPartition(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	stream := offHomeStream(t, "process/sarama/", 3)
	home, fnvPartition := kafkastore.PartitionFor(stream, 3), saramaPartition(stream, 3)
	produceSarama(t, env, topic, nil, stream, 1, 2, 3)
	truth := recordsOf(t, env, topic, stream)
	if len(truth) != 3 || truth[0].Partition != fnvPartition || truth[2].Partition != fnvPartition {
		t.Fatalf("Sarama wrote %+v, want 3 records on partition %d", truth, fnvPartition)
	}

	// A second store (another process) running since before the rebuild.
	other, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	rep, err := s.RebuildCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []kafkastore.Anomaly{{Kind: kafkastore.AnomalyOffHome, StreamID: stream, Partition: fnvPartition, Offset: truth[0].Offset,
		ExpectedPartition: home, Partitions: []int32{fnvPartition}, Records: 3}}
	if got := anomaliesOf(rep, stream); !slices.EqualFunc(got, want, anomalyEqual) || rep.AnomalyCount != 1 || rep.Misplaced != 1 {
		t.Errorf("rebuild report %+v\nanomalies %+v\nwant      %+v", rep, got, want)
	}
	t.Logf("anomaly: %v", rep.Anomalies)

	// Wholly on one partition, the stream reads completely from there.
	if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 3)) {
		t.Errorf("ReadStream = %v, %v; want 1..3", seqs, err)
	}

	time.Sleep(300 * time.Millisecond) // the catalog's refresh interval
	for _, expected := range []framework.ExpectedVersion{framework.ExactVersion(3), framework.AnyVersion, framework.NoStream} {
		_, err = s.Append(ctx, stream, expected, []framework.EventData{{Type: "Counted"}})
		if expected == framework.NoStream {
			_, err = other.Append(ctx, stream, expected, []framework.EventData{{Type: "Counted"}})
		}
		if err == nil {
			t.Fatalf("Append (%v) to a stream Sarama placed off its murmur2 partition succeeded", expected)
		}
		pe := placementError(t, err)
		if pe.Op != "append" || pe.Kind != kafkastore.AnomalyOffHome || pe.StreamID != stream || pe.Partition != fnvPartition || pe.ExpectedPartition != home {
			t.Errorf("Append error %+v, want off-home on %d, home %d", pe, fnvPartition, home)
		}
		for _, part := range []string{strconv.Quote(stream), fmt.Sprintf("on partition %d", fnvPartition), fmt.Sprintf("murmur2 partition is %d", home), "partitioner is not murmur2", "Sarama"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("Append error %q does not say %q", err, part)
			}
		}
	}
	t.Logf("Append: %v", err)
	if got := recordsOf(t, env, topic, stream); len(got) != 3 {
		t.Errorf("the topic holds %d records of %s after the refused appends, want 3: %+v", len(got), stream, got)
	}
}

// TestReadStreamReadsPastAStaleCatalogHead: a second writer (a raw
// franz-go producer, murmur2 as the store) appends after the catalog
// entry; ReadStream returns those events too, also on later calls that
// use what the first one remembered.
func TestReadStreamReadsPastAStaleCatalogHead(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	const stream = "process/stale/a"
	appendN(t, s, stream, 3)
	appendN(t, s, "process/stale/other", 2)
	produceFranz(t, env, s.Config().Topic, stream, 4, 5)
	if e, _, _ := s.Entry(ctx, stream); e.HeadSequence != 3 {
		t.Fatalf("catalog head %d, want the stale 3", e.HeadSequence)
	}
	for range 2 {
		if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 5)) {
			t.Errorf("ReadStream after 0 = %v, %v; want 1..5", seqs, err)
		}
		if seqs, err := readAll(ctx, s, stream, 3); err != nil || !slices.Equal(seqs, seqRange(4, 5)) {
			t.Errorf("ReadStream after 3 = %v, %v; want 4, 5", seqs, err)
		}
	}
	produceFranz(t, env, s.Config().Topic, stream, 6)
	if seqs, err := readAll(ctx, s, stream, 5); err != nil || !slices.Equal(seqs, []uint64{6}) {
		t.Errorf("ReadStream after 5 = %v, %v; want 6", seqs, err)
	}
	if seqs, err := readAll(ctx, s, "process/stale/other", 0); err != nil || !slices.Equal(seqs, seqRange(1, 2)) {
		t.Errorf("ReadStream of the other stream = %v, %v; want 1, 2", seqs, err)
	}
}

// TestReadStreamFindsAStreamTheCatalogLacks: a stream written by a raw
// franz-go producer is read from its key's murmur2 partition; ListStreams
// lists it only after a rebuild.
func TestReadStreamFindsAStreamTheCatalogLacks(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	const stream = "process/uncatalogued/a"
	produceFranz(t, env, s.Config().Topic, stream, 1, 2, 3, 4)
	for range 2 {
		if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 4)) {
			t.Errorf("ReadStream = %v, %v; want 1..4", seqs, err)
		}
	}
	if seqs, err := readAll(ctx, s, stream, 2); err != nil || !slices.Equal(seqs, seqRange(3, 4)) {
		t.Errorf("ReadStream after 2 = %v, %v; want 3, 4", seqs, err)
	}
	if seqs, err := readAll(ctx, s, "process/uncatalogued/none", 0); err != nil || len(seqs) != 0 {
		t.Errorf("ReadStream of a stream nobody wrote = %v, %v", seqs, err)
	}
	if got := listAll(t, s, "process/uncatalogued/"); len(got) != 0 {
		t.Errorf("ListStreams before a rebuild = %v; the catalog does not follow the event topic", got)
	}
	if _, err := s.RebuildCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, "process/uncatalogued/"); !slices.Equal(got, []string{stream}) {
		t.Errorf("ListStreams after a rebuild = %v", got)
	}
}

// TestReadStreamStopsAtAGap: sequences 1, 2, 4, 5 on the stream's
// partition: ReadStream yields 1 and 2, then the gap as an error.
func TestReadStreamStopsAtAGap(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	const stream = "process/gap/a"
	produceFranz(t, env, s.Config().Topic, stream, 1, 2, 4, 5)
	truth := recordsOf(t, env, s.Config().Topic, stream)
	seqs, err := readAll(ctx, s, stream, 0)
	if err == nil {
		t.Fatalf("ReadStream of 1, 2, 4, 5 = %v and no error", seqs)
	}
	pe := placementError(t, err)
	want := kafkastore.Anomaly{Kind: kafkastore.AnomalyGap, StreamID: stream, Partition: truth[2].Partition, Offset: truth[2].Offset,
		ExpectedPartition: kafkastore.PartitionFor(stream, 3), Sequence: 4, Previous: 2}
	if !slices.Equal(seqs, seqRange(1, 2)) || !anomalyEqual(pe.Anomaly, want) || !errors.Is(err, framework.ErrSequenceGap) {
		t.Errorf("ReadStream = %v, %+v; want 1, 2 and %+v", seqs, pe.Anomaly, want)
	}
	t.Logf("ReadStream: %v", err)
	// After 2 the caller expects 3 and gets 4: the same gap. After 3 (a
	// skipped gap) the stream reads on.
	if _, err := readAll(ctx, s, stream, 2); !errors.Is(err, framework.ErrSequenceGap) {
		t.Errorf("ReadStream after 2: %v, want the gap", err)
	}
	if seqs, err := readAll(ctx, s, stream, 3); err != nil || !slices.Equal(seqs, seqRange(4, 5)) {
		t.Errorf("ReadStream after 3 = %v, %v; want 4, 5", seqs, err)
	}
}

// TestReadStreamReportsACatalogHeadThePartitionLacks: a catalog entry
// claims sequence 5, the partition holds 2: ReadStream says so after the
// two events instead of ending short.
func TestReadStreamReportsACatalogHeadThePartitionLacks(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	const stream = "process/short/a"
	appendN(t, s, stream, 2)
	e, _, _ := s.Entry(ctx, stream)
	forged := fmt.Sprintf(`{"partition":%d,"first_offset":%d,"head_sequence":5,"head_offset":%d}`, e.Partition, e.FirstOffset, e.HeadOffset)
	if err := env.Client(t).ProduceSync(ctx, &kgo.Record{Topic: s.Config().CatalogTopic, Key: []byte(stream), Value: []byte(forged)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reader, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: s.Config().Topic})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	seqs, err := readAll(ctx, reader, stream, 0)
	if err == nil {
		t.Fatalf("ReadStream = %v and no error, the catalog says 5 events", seqs)
	}
	pe := placementError(t, err)
	if !slices.Equal(seqs, seqRange(1, 2)) || pe.Kind != kafkastore.AnomalyMissing || pe.Sequence != 5 || pe.Previous != 2 || pe.Partition != e.Partition {
		t.Errorf("ReadStream = %v, %+v; want 1, 2 and missing 5 after 2", seqs, pe.Anomaly)
	}
	t.Logf("ReadStream: %v", err)
}

// TestReadStreamEndsAfterATransaction: a transactional producer (a Java
// or Kafka Streams writer with exactly-once) ends the partition with a
// commit marker, which a read-committed consumer never receives as a
// record; reads and the rebuild still end.
func TestReadStreamEndsAfterATransaction(t *testing.T) {
	s, env := placementStore(t)
	ctx, cancel := context.WithTimeout(ctxFor(t), 20*time.Second)
	defer cancel()
	const stream = "process/txn/a"
	cl := env.Client(t, kgo.DefaultProduceTopic(s.Config().Topic), kgo.TransactionalID(s.Config().Topic+"-txn"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for seq := 1; seq <= 3; seq++ {
		r := &kgo.Record{Key: []byte(stream), Value: []byte("{}")}
		for _, h := range contract(stream, seq) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// The commit returns before the coordinator writes the markers: until
	// then the records are not visible to a read-committed consumer.
	for {
		seqs, err := readAll(ctx, s, stream, 0)
		if err != nil {
			t.Fatalf("ReadStream: %v after %v", err, seqs)
		}
		if slices.Equal(seqs, seqRange(1, 3)) {
			break
		}
		if len(seqs) != 0 {
			t.Fatalf("ReadStream = %v, want 1..3", seqs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep, err := s.RebuildCatalog(ctx)
	if err != nil || rep.Streams != 1 || rep.Records != 3 || rep.AnomalyCount != 0 {
		t.Errorf("RebuildCatalog = %+v, %v; want 1 stream, 3 records", rep, err)
	}
}

// TestFranzGoDefaultPartitionerIsNoAnomaly is the control: franz-go's
// default partitioner hashes keys with murmur2 as the store does, so its
// streams are read before any rebuild and the rebuild finds nothing wrong.
func TestFranzGoDefaultPartitionerIsNoAnomaly(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	for i := range 20 {
		produceFranz(t, env, s.Config().Topic, fmt.Sprintf("process/franz/%02d", i), 1, 2, 3)
	}
	appendN(t, s, "process/store/a", 2)
	for i := range 20 {
		id := fmt.Sprintf("process/franz/%02d", i)
		if seqs, err := readAll(ctx, s, id, 0); err != nil || !slices.Equal(seqs, seqRange(1, 3)) {
			t.Errorf("ReadStream(%s) = %v, %v; want 1..3", id, seqs, err)
		}
	}
	rep, err := s.RebuildCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 21 || rep.Records != 62 || len(rep.Anomalies) != 0 || rep.AnomalyCount != 0 || rep.Misplaced != 0 || rep.MalformedCount != 0 {
		t.Errorf("rebuild report %+v, want 21 streams, 62 records, no anomaly", rep)
	}
	for i := range 20 {
		id := fmt.Sprintf("process/franz/%02d", i)
		if e, ok, _ := s.Entry(ctx, id); !ok || e.Placement != "" || e.HeadSequence != 3 || e.Partition != kafkastore.PartitionFor(id, 3) {
			t.Errorf("catalog entry of %s = %+v, %v", id, e, ok)
		}
		if _, err := s.Append(ctx, id, framework.ExactVersion(3), []framework.EventData{{Type: "Counted"}}); err != nil {
			t.Errorf("Append to %s: %v", id, err)
		}
	}
}

// TestMurmur2ConfiguredForeignProducersAreNoAnomaly checks the settings
// docs/kafkastore.md gives for Sarama and kafka-go, and one that looks
// right but is not: Sarama's NewCustomHashPartitioner with a murmur2 hash
// takes the absolute value after the modulo, not the Java client's mask
// before it, and so misplaces keys whose hash has the top bit set.
func TestMurmur2ConfiguredForeignProducersAreNoAnomaly(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	newMurmur2 := func() hash.Hash32 { return &murmur2Hash{} }
	for i := range 12 {
		produceSarama(t, env, topic, sarama.NewMurmur2Partitioner, fmt.Sprintf("process/sarama-murmur2/%02d", i), 1, 2)
		produceSarama(t, env, topic, sarama.NewCustomPartitioner(sarama.WithAbsFirst(), sarama.WithCustomHashFunction(newMurmur2)),
			fmt.Sprintf("process/sarama-absfirst/%02d", i), 1, 2)
		produceKafkaGo(t, env, topic, &kafkago.Murmur2Balancer{}, fmt.Sprintf("process/kafkago-murmur2/%02d", i), 1, 2)
	}
	// A key on which Sarama's custom hash partitioner and murmur2 disagree.
	var wrong string
	for i := range 100 {
		id := fmt.Sprintf("process/sarama-customhash/%d", i)
		h := int32(murmur2([]byte(id)))
		p := h % 3
		if p < 0 {
			p = -p
		}
		if p != kafkastore.PartitionFor(id, 3) {
			wrong = id
			break
		}
	}
	produceSarama(t, env, topic, sarama.NewCustomHashPartitioner(newMurmur2), wrong, 1, 2)

	rep, err := s.RebuildCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 37 || rep.Records != 74 || rep.AnomalyCount != 1 || len(rep.Anomalies) != 1 ||
		rep.Anomalies[0].StreamID != wrong || rep.Anomalies[0].Kind != kafkastore.AnomalyOffHome {
		t.Errorf("rebuild report %+v, want 37 streams, 74 records and only %s off-home", rep, wrong)
	}
	t.Logf("anomalies: %v", rep.Anomalies)
}

// murmur2Hash is Kafka's murmur2 as a hash.Hash32, for Sarama's custom
// hash partitioners.
type murmur2Hash struct{ buf []byte }

func (h *murmur2Hash) Write(p []byte) (int, error) { h.buf = append(h.buf, p...); return len(p), nil }
func (h *murmur2Hash) Sum(b []byte) []byte {
	v := h.Sum32()
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
func (h *murmur2Hash) Reset()         { h.buf = h.buf[:0] }
func (h *murmur2Hash) Size() int      { return 4 }
func (h *murmur2Hash) BlockSize() int { return 4 }
func (h *murmur2Hash) Sum32() uint32  { return murmur2(h.buf) }

// murmur2 is Kafka's Utils.murmur2, written again from the Java source so
// that the test does not check the package against itself.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	length := len(data)
	h := uint32(seed ^ length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[length&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
