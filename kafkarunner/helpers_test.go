package kafkarunner_test

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

func consumeFromStart(topic string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

func pollOne(t *testing.T, cl *kgo.Client) *kgo.Record {
	t.Helper()
	ctx := ctxFor(t)
	for {
		fetches := cl.PollRecords(ctx, 1)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no record: %v", err)
		}
		if recs := fetches.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

func headerOf(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func redisFor(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	return testenv.Redis(tb).Client
}

func ptr(s string) *string { return &s }

// saramaPartition is Sarama's default hash partitioner: FNV-1a of the key,
// as a signed 32-bit number, modulo the partition count, made positive.
func saramaPartition(key string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// offHomeStream returns a stream ID whose Sarama partition differs from its
// murmur2 partition among n.
func offHomeStream(t *testing.T, prefix string, n int32) string {
	t.Helper()
	for i := range 100 {
		id := fmt.Sprintf("%s%d", prefix, i)
		if saramaPartition(id, n) != kafkastore.PartitionFor(id, n) {
			return id
		}
	}
	t.Fatal("no stream ID with different Sarama and murmur2 partitions")
	return ""
}

// contract is the header contract of one event, as name/value pairs.
func contract(stream string, seq int) [][2]string {
	return [][2]string{
		{kafkastore.HeaderStreamID, stream},
		{kafkastore.HeaderSequence, strconv.Itoa(seq)},
		{kafkastore.HeaderEventID, fmt.Sprintf("%s#%d", stream, seq)},
		{kafkastore.HeaderType, "Counted"},
		{kafkastore.HeaderSchemaVersion, "1"},
		{kafkastore.HeaderRecordedAt, time.Now().UTC().Format(time.RFC3339Nano)},
	}
}

// produceSarama writes events seqs of stream with a Sarama SyncProducer
// using partitioner, or if nil Sarama's default (FNV-1a hash of the key).
func produceSarama(t *testing.T, env *testenv.KafkaEnv, topic string, partitioner sarama.PartitionerConstructor, stream string, seqs ...int) {
	t.Helper()
	cfg := sarama.NewConfig()
	if partitioner != nil {
		cfg.Producer.Partitioner = partitioner
	}
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(env.Seeds, cfg)
	if err != nil {
		t.Fatalf("sarama: %v", err)
	}
	defer p.Close()
	for _, seq := range seqs {
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(stream), Value: sarama.StringEncoder("{}")}
		for _, h := range contract(stream, seq) {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
		}
		if _, _, err := p.SendMessage(msg); err != nil {
			t.Fatalf("sarama: send %s#%d: %v", stream, seq, err)
		}
	}
}

// produceKafkaGo writes events seqs of stream with a kafka-go Writer using
// balancer, or if nil kafka-go's default (round robin), one message per
// call so that round robin sends each to the next partition.
func produceKafkaGo(t *testing.T, env *testenv.KafkaEnv, topic string, balancer kafkago.Balancer, stream string, seqs ...int) {
	t.Helper()
	// A transport of its own: the shared default one caches metadata that
	// does not know a topic created since.
	transport := &kafkago.Transport{}
	defer transport.CloseIdleConnections()
	w := &kafkago.Writer{Addr: kafkago.TCP(env.Seeds...), Topic: topic, Balancer: balancer, Transport: transport,
		RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for _, seq := range seqs {
		msg := kafkago.Message{Key: []byte(stream), Value: []byte("{}")}
		for _, h := range contract(stream, seq) {
			msg.Headers = append(msg.Headers, kafkago.Header{Key: h[0], Value: []byte(h[1])})
		}
		if err := w.WriteMessages(ctxFor(t), msg); err != nil {
			t.Fatalf("kafka-go: write %s#%d: %v", stream, seq, err)
		}
	}
}

// recordsOf reads the whole topic (every partition to its end) and returns
// the records keyed stream, in partition then offset order: the ground
// truth the tests compare the store with.
func recordsOf(t *testing.T, env *testenv.KafkaEnv, topic, stream string) []placed {
	t.Helper()
	ctx := ctxFor(t)
	ends, err := env.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	// Appends are transactions: their markers occupy the last offsets.
	cl := env.Client(t, append(consumeFromStart(topic), kgo.KeepControlRecords())...)
	got := map[int32]int64{}
	var out []placed
	for {
		done := true
		for p, end := range want {
			if got[p] < end {
				done = false
			}
		}
		if done {
			break
		}
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = r.Offset + 1
			if string(r.Key) == stream {
				out = append(out, placed{r.Partition, r.Offset, headerOf(r, kafkastore.HeaderSequence)})
			}
		})
	}
	slices.SortFunc(out, func(a, b placed) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out
}

// placed is where a record of a stream sits in the topic.
type placed struct {
	Partition int32
	Offset    int64
	Sequence  string
}

// produceFranz writes events seqs of stream with a franz-go client and its
// default partitioner (murmur2 of the key), as a second writer would.
func produceFranz(t *testing.T, env *testenv.KafkaEnv, topic, stream string, seqs ...int) {
	t.Helper()
	cl := env.Client(t, kgo.DefaultProduceTopic(topic))
	for _, seq := range seqs {
		r := &kgo.Record{Key: []byte(stream), Value: []byte("{}")}
		for _, h := range contract(stream, seq) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		if err := cl.ProduceSync(ctxFor(t), r).FirstErr(); err != nil {
			t.Fatalf("franz-go: produce %s#%d: %v", stream, seq, err)
		}
	}
}

var payload = []byte(`{"malo":"51238696788","day":"2026-03-29","unit":"Wh","values":[1200,1180,1175,1190,1201,1188,1179,1203]}`)
