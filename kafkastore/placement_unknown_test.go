package kafkastore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// The tests here write streams with other producers, as placement_test.go
// does, but never rebuild the catalog: the store must find out where the
// records of a stream it lacks are, on every partition, before it answers.

// streamAt returns a stream ID whose murmur2 partition among n is p.
func streamAt(t *testing.T, prefix string, n, p int32) string {
	t.Helper()
	for i := range 1000 {
		id := fmt.Sprintf("%s%d", prefix, i)
		if kafkastore.PartitionFor(id, n) == p {
			return id
		}
	}
	t.Fatalf("no stream ID with prefix %s on partition %d of %d", prefix, p, n)
	return ""
}

// sequencesOf returns the sequences of records, in their order.
func sequencesOf(records []placed) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = r.Sequence
	}
	return out
}

// TestUnknownSplitStreamIsRefused: kafka-go's default balancer (round
// robin, from partition 0 for a new Writer) puts events 1, 2, 3 of a
// stream on partitions 0, 1, 2. Whether the key's murmur2 partition holds
// the first events or none, ReadStream refuses the stream instead of
// returning part of it, StreamVersion counts every partition, and Append
// refuses it without writing.
func TestUnknownSplitStreamIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		home int32
		seqs []int
	}{
		{"first events at home", 0, []int{1, 2, 3}},
		{"nothing at home", 2, []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, env := placementStore(t)
			ctx := ctxFor(t)
			topic := s.Config().Topic
			stream := streamAt(t, "process/kafkago/unknown-", 3, tc.home)
			produceKafkaGo(t, env, topic, nil, stream, tc.seqs...)
			truth := recordsOf(t, env, topic, stream)
			var partitions []int32
			for i, r := range truth {
				if r.Partition != int32(i) || r.Sequence != strconv.Itoa(i+1) {
					t.Fatalf("kafka-go wrote %+v, want sequence i+1 on partition i", truth)
				}
				partitions = append(partitions, r.Partition)
			}
			// The first record off the key's partition: where the error points.
			away := truth[0]
			if away.Partition == tc.home {
				away = truth[1]
			}
			want := kafkastore.Anomaly{Kind: kafkastore.AnomalySplit, StreamID: stream, Partition: away.Partition, Offset: away.Offset,
				ExpectedPartition: tc.home, Partitions: partitions}

			for _, after := range []uint64{0, 0, 1} {
				seqs, err := readAll(ctx, s, stream, after)
				if err == nil {
					t.Fatalf("ReadStream(after %d) of a stream split by round robin = %v and no error", after, seqs)
				}
				pe := placementError(t, err)
				if len(seqs) != 0 || pe.Op != "read" || !anomalyEqual(pe.Anomaly, want) {
					t.Errorf("ReadStream(after %d) = %v, %+v; want no events and %+v", after, seqs, pe.Anomaly, want)
				}
				if after == 1 {
					t.Logf("ReadStream: %v", err)
				}
			}
			if v, err := s.StreamVersion(ctx, stream); err != nil || v != uint64(len(tc.seqs)) {
				t.Errorf("StreamVersion = %d, %v; want %d, the highest sequence on any partition", v, err, len(tc.seqs))
			}
			for _, expected := range []framework.ExpectedVersion{framework.NoStream, framework.AnyVersion, framework.ExactVersion(uint64(len(tc.seqs)))} {
				_, err := s.Append(ctx, stream, expected, []framework.EventData{{Type: "Counted"}})
				if err == nil {
					t.Fatalf("Append (%v) to a stream split by round robin succeeded", expected)
				}
				pe := placementError(t, err)
				if pe.Op != "append" || !anomalyEqual(pe.Anomaly, want) {
					t.Errorf("Append (%v) error %+v, want %+v", expected, pe.Anomaly, want)
				}
				for _, part := range []string{strconv.Quote(stream), fmt.Sprintf("partitions %v", partitions),
					fmt.Sprintf("would go to partition %d", tc.home), "partitioner is not murmur2", "round robin"} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("Append error %q does not say %q", err, part)
					}
				}
				if expected == framework.AnyVersion {
					t.Logf("Append: %v", err)
				}
			}
			if got := recordsOf(t, env, topic, stream); len(got) != len(tc.seqs) {
				t.Errorf("the topic holds %d records of %s after the refused appends, want %d: %+v", len(got), stream, len(tc.seqs), got)
			}
		})
	}
}

// TestUnknownOffHomeStreamIsReadWhereItIs: Sarama's default partitioner
// (FNV-1a) puts a whole stream on another partition than its key's
// murmur2 one. As for an off-home stream the catalog knows, ReadStream
// and StreamVersion read it where it is, and Append refuses it, naming
// both partitions, without writing.
func TestUnknownOffHomeStreamIsReadWhereItIs(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	stream := offHomeStream(t, "process/sarama/unknown-", 3)
	home, fnvPartition := kafkastore.PartitionFor(stream, 3), saramaPartition(stream, 3)
	produceSarama(t, env, topic, nil, stream, 1, 2, 3)
	truth := recordsOf(t, env, topic, stream)
	if len(truth) != 3 || truth[0].Partition != fnvPartition || truth[2].Partition != fnvPartition {
		t.Fatalf("Sarama wrote %+v, want 3 records on partition %d", truth, fnvPartition)
	}

	for range 2 {
		if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 3)) {
			t.Errorf("ReadStream = %v, %v; want 1..3 from partition %d", seqs, err, fnvPartition)
		}
	}
	if seqs, err := readAll(ctx, s, stream, 2); err != nil || !slices.Equal(seqs, []uint64{3}) {
		t.Errorf("ReadStream after 2 = %v, %v; want 3", seqs, err)
	}
	if v, err := s.StreamVersion(ctx, stream); err != nil || v != 3 {
		t.Errorf("StreamVersion = %d, %v; want 3", v, err)
	}
	want := kafkastore.Anomaly{Kind: kafkastore.AnomalyOffHome, StreamID: stream, Partition: fnvPartition, Offset: truth[0].Offset,
		ExpectedPartition: home, Partitions: []int32{fnvPartition}}
	for _, expected := range []framework.ExpectedVersion{framework.NoStream, framework.AnyVersion, framework.ExactVersion(3)} {
		_, err := s.Append(ctx, stream, expected, []framework.EventData{{Type: "Counted"}})
		if err == nil {
			t.Fatalf("Append (%v) to a stream Sarama placed off its murmur2 partition succeeded", expected)
		}
		pe := placementError(t, err)
		if pe.Op != "append" || !anomalyEqual(pe.Anomaly, want) {
			t.Errorf("Append (%v) error %+v, want %+v", expected, pe.Anomaly, want)
		}
		for _, part := range []string{strconv.Quote(stream), fmt.Sprintf("on partition %d", fnvPartition), fmt.Sprintf("murmur2 partition is %d", home),
			fmt.Sprintf("would go to partition %d", home), "partitioner is not murmur2", "Sarama"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("Append error %q does not say %q", err, part)
			}
		}
		if expected == framework.AnyVersion {
			t.Logf("Append: %v", err)
		}
	}
	if got := recordsOf(t, env, topic, stream); len(got) != 3 {
		t.Errorf("the topic holds %d records of %s after the refused appends, want 3: %+v", len(got), stream, got)
	}
}

// TestUnknownMurmur2StreamHasItsVersion: a stream another producer wrote
// on its key's murmur2 partition (franz-go's default partitioner) exists
// for Append as it does for ReadStream: NoStream conflicts with its real
// version, and the expected version appends the next sequence.
func TestUnknownMurmur2StreamHasItsVersion(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	const stream = "process/franz/unknown"
	home := kafkastore.PartitionFor(stream, 3)
	appendN(t, s, "process/franz/own", 2) // the catalog is not empty
	produceFranz(t, env, topic, stream, 1, 2, 3)

	if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 3)) {
		t.Errorf("ReadStream = %v, %v; want 1..3", seqs, err)
	}
	if v, err := s.StreamVersion(ctx, stream); err != nil || v != 3 {
		t.Errorf("StreamVersion = %d, %v; want 3", v, err)
	}
	for _, expected := range []framework.ExpectedVersion{framework.NoStream, framework.ExactVersion(2)} {
		got, err := s.Append(ctx, stream, expected, []framework.EventData{{Type: "Counted"}})
		vc, ok := errors.AsType[*framework.VersionConflictError](err)
		if !ok || !errors.Is(err, framework.ErrVersionConflict) {
			t.Fatalf("Append (%v) to a stream another producer wrote = %v, %v; want a version conflict", expected, got, err)
		}
		if *vc != (framework.VersionConflictError{StreamID: stream, Expected: expected, Actual: 3}) {
			t.Errorf("Append (%v) conflict %+v, want actual version 3", expected, *vc)
		}
		t.Logf("Append: %v", err)
	}
	if got := recordsOf(t, env, topic, stream); !slices.Equal(sequencesOf(got), []string{"1", "2", "3"}) {
		t.Fatalf("the topic holds %+v after the refused appends, want sequences 1..3", got)
	}

	got, err := s.Append(ctx, stream, framework.ExactVersion(3), []framework.EventData{{Type: "Counted"}})
	if err != nil {
		t.Fatalf("Append (exact 3): %v", err)
	}
	if len(got) != 1 || got[0].Sequence != 4 || got[0].Position == nil || got[0].Position.Partition != home {
		t.Errorf("Append (exact 3) = %+v, want sequence 4 on partition %d", got, home)
	}
	if got, err := s.Append(ctx, stream, framework.ExactVersion(4), []framework.EventData{{Type: "Counted"}}); err != nil || got[0].Sequence != 5 {
		t.Errorf("Append (exact 4) = %+v, %v; want sequence 5", got, err)
	}
	truth := recordsOf(t, env, topic, stream)
	if !slices.Equal(sequencesOf(truth), []string{"1", "2", "3", "4", "5"}) || truth[0].Partition != home || truth[4].Partition != home {
		t.Errorf("the topic holds %+v, want sequences 1..5 on partition %d", truth, home)
	}
	if seqs, err := readAll(ctx, s, stream, 0); err != nil || !slices.Equal(seqs, seqRange(1, 5)) {
		t.Errorf("ReadStream = %v, %v; want 1..5", seqs, err)
	}
	if e, ok, _ := s.Entry(ctx, stream); !ok || e.FirstOffset != truth[0].Offset || e.HeadSequence != 5 || e.HeadOffset != truth[4].Offset {
		t.Errorf("catalog entry after the appends = %+v, %v; want first offset %d, head 5 at %d", e, ok, truth[0].Offset, truth[4].Offset)
	}
}

// TestUnknownStreamsBeyondTheKeyLimit: a partition with more distinct keys
// than the store remembers (262,144) is searched in full for a stream the
// catalog lacks, never skipped: the split stream is still refused and the
// murmur2 one still has its version, on the first call and on later ones.
func TestUnknownStreamsBeyondTheKeyLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 270,000 records")
	}
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	const fillers = 1<<18 + 8_000
	cl := env.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	batch := make([]*kgo.Record, 0, 10_000)
	for i := range fillers {
		batch = append(batch, &kgo.Record{Partition: 0, Key: []byte(fmt.Sprintf("filler/%06d", i)), Value: []byte("{}")})
		if len(batch) == cap(batch) || i == fillers-1 {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	split := streamAt(t, "process/kafkago/crowded-", 3, 0)
	produceKafkaGo(t, env, topic, nil, split, 1, 2)
	franz := streamAt(t, "process/franz/crowded-", 3, 0)
	produceFranz(t, env, topic, franz, 1, 2)
	truth := recordsOf(t, env, topic, split)
	if len(truth) != 2 || truth[0].Partition != 0 || truth[1].Partition != 1 {
		t.Fatalf("kafka-go wrote %+v, want sequence 1 on partition 0 and 2 on partition 1", truth)
	}
	for range 2 {
		seqs, err := readAll(ctx, s, split, 0)
		if err == nil {
			t.Fatalf("ReadStream of the split stream = %v and no error", seqs)
		}
		if pe := placementError(t, err); len(seqs) != 0 || pe.Kind != kafkastore.AnomalySplit || pe.Partition != 1 || pe.Offset != truth[1].Offset {
			t.Errorf("ReadStream of the split stream = %v, %+v; want a split at partition 1 offset %d", seqs, pe.Anomaly, truth[1].Offset)
		}
		if _, err := s.Append(ctx, split, framework.AnyVersion, []framework.EventData{{Type: "Counted"}}); !errors.Is(err, kafkastore.ErrMisplaced) {
			t.Errorf("Append to the split stream: %v, want ErrMisplaced", err)
		}
		_, err = s.Append(ctx, franz, framework.NoStream, []framework.EventData{{Type: "Counted"}})
		if vc, ok := errors.AsType[*framework.VersionConflictError](err); !ok || vc.Actual != 2 {
			t.Errorf("Append (no stream) to the murmur2 stream: %v, want a conflict with version 2", err)
		}
	}
	if n := len(recordsOf(t, env, topic, split)) + len(recordsOf(t, env, topic, franz)); n != 4 {
		t.Errorf("the topic holds %d records of the two streams, want 4", n)
	}
}

// BenchmarkUncataloged measures what finding a stream the catalog lacks on
// every partition costs, beside the same call for a cataloged stream in
// the same run: a 10-event stream written by a raw franz-go producer
// (uncataloged) and one appended through the Store (cataloged), followed by
// 100,000 records of other streams over 3 partitions. "first" calls are a
// fresh Store's first (it has read nothing yet); the others are later
// calls of one Store. append/new appends one event with NoStream to a new
// stream each time.
//
//	go test -run '^$' -bench Uncataloged -benchtime 10x -count 6 ./kafkastore
func BenchmarkUncataloged(b *testing.B) {
	const tail = 100_000
	s, env := newStore(b, kafkastore.Config{Partitions: 3})
	ctx := context.Background()
	const cataloged, uncataloged = "process/bench/cataloged", "process/bench/uncataloged"
	ten := make([]framework.EventData, 10)
	for i := range ten {
		ten[i] = framework.EventData{Type: "ValuesReceived", Data: payload}
	}
	if _, err := s.Append(ctx, cataloged, framework.NoStream, ten); err != nil {
		b.Fatal(err)
	}
	cl := env.Client(b, kgo.DefaultProduceTopic(s.Config().Topic))
	for seq := 1; seq <= 10; seq++ {
		r := &kgo.Record{Key: []byte(uncataloged), Value: payload}
		for _, h := range contract(uncataloged, seq) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]framework.EventData, 1000)
	for i := range batch {
		batch[i] = framework.EventData{Type: "ValuesReceived", Data: payload}
	}
	for i := range tail / len(batch) {
		if _, err := s.Append(ctx, fmt.Sprintf("process/bench/filler-%d", i), framework.NoStream, batch); err != nil {
			b.Fatal(err)
		}
	}
	read := func(b *testing.B, st *kafkastore.Store, stream string) {
		n := 0
		for _, err := range st.ReadStream(ctx, stream, 0) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10 {
			b.Fatalf("read %d events of %s, want 10", n, stream)
		}
	}
	// fresh calls fn with a new Store, timing only fn.
	fresh := func(b *testing.B, fn func(*kafkastore.Store)) {
		b.StopTimer()
		st, err := newGuarded(ctx, kafkastore.Config{Seeds: s.Config().Seeds, Topic: s.Config().Topic})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		fn(st)
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	for _, stream := range []string{cataloged, uncataloged} {
		kind := strings.TrimPrefix(stream, "process/bench/")
		b.Run("first-read/"+kind, func(b *testing.B) {
			for b.Loop() {
				fresh(b, func(st *kafkastore.Store) { read(b, st, stream) })
			}
		})
		b.Run("read/"+kind, func(b *testing.B) {
			read(b, s, stream)
			for b.Loop() {
				read(b, s, stream)
			}
		})
	}
	one := []framework.EventData{{Type: "ValuesReceived", Data: payload}}
	next := 0
	newStream := func() string { next++; return fmt.Sprintf("process/bench/new-%d", next) }
	b.Run("first-append/new", func(b *testing.B) {
		for b.Loop() {
			fresh(b, func(st *kafkastore.Store) {
				if _, err := st.Append(ctx, newStream(), framework.NoStream, one); err != nil {
					b.Fatal(err)
				}
			})
		}
	})
	b.Run("append/cataloged", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Append(ctx, cataloged, framework.AnyVersion, one); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append/new", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Append(ctx, newStream(), framework.NoStream, one); err != nil {
				b.Fatal(err)
			}
		}
	})
}
