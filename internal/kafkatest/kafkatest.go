// Package kafkatest holds the helpers the tests of kafkastore and
// kafkarunner share: a store on a topic of its own on the real broker, the
// header contract written by other clients (Sarama, kafka-go, franz-go),
// where a stream's records landed.
package kafkatest

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// NewStore returns a store on a topic of its own, with 3 partitions.
func NewStore(t testing.TB, cfg kafkastore.Config) (*kafkastore.Store, *testenv.KafkaEnv) {
	t.Helper()
	env := testenv.Kafka(t)
	if cfg.Topic == "" {
		cfg.Topic = env.TopicName(t, "events")
	}
	cfg.Seeds = env.Seeds
	if cfg.Partitions == 0 {
		cfg.Partitions = 3
	}
	cfg.ReplicationFactor = 1
	s, err := NewGuarded(Ctx(t), cfg)
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	t.Cleanup(s.Close)
	return s, env
}

// memGuards holds one in-memory append registry per cluster and topic, shared by every
// Store a test of this process opens on the topic. Tests of writers in
// several processes use the Redis registry instead.
var memGuards sync.Map

// WithGuard gives cfg the topic's in-memory registry unless it has a
// guard or is a single writer.
func WithGuard(cfg kafkastore.Config) kafkastore.Config {
	if cfg.Guard == nil && !cfg.SingleWriter {
		g, _ := memGuards.LoadOrStore(strings.Join(cfg.Seeds, ",")+"/"+cfg.Topic, appendguard.NewMemory())
		cfg.Guard = g.(appendguard.Registry)
	}
	return cfg
}

// NewGuarded is kafkastore.New with the topic's registry.
func NewGuarded(ctx context.Context, cfg kafkastore.Config) (*kafkastore.Store, error) {
	return kafkastore.New(ctx, WithGuard(cfg))
}

func ConsumeFromStart(topic string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

func PollOne(t *testing.T, cl *kgo.Client) *kgo.Record {
	t.Helper()
	ctx := Ctx(t)
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

func HeaderOf(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// SaramaPartition is Sarama's default hash partitioner: FNV-1a of the key,
// as a signed 32-bit number, modulo the partition count, made positive.
func SaramaPartition(key string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// OffHomeStream returns a stream ID whose Sarama partition differs from its
// murmur2 partition among n.
func OffHomeStream(t *testing.T, prefix string, n int32) string {
	t.Helper()
	for i := range 100 {
		id := fmt.Sprintf("%s%d", prefix, i)
		if SaramaPartition(id, n) != kafkastore.PartitionFor(id, n) {
			return id
		}
	}
	t.Fatal("no stream ID with different Sarama and murmur2 partitions")
	return ""
}

// Contract is the header Contract of one event, as name/value pairs.
func Contract(stream string, seq int) [][2]string {
	return [][2]string{
		{kafkastore.HeaderStreamID, stream},
		{kafkastore.HeaderSequence, strconv.Itoa(seq)},
		{kafkastore.HeaderEventID, fmt.Sprintf("%s#%d", stream, seq)},
		{kafkastore.HeaderType, "Counted"},
		{kafkastore.HeaderSchemaVersion, "1"},
		{kafkastore.HeaderRecordedAt, time.Now().UTC().Format(time.RFC3339Nano)},
	}
}

// ProduceSarama writes events seqs of stream with a Sarama SyncProducer
// using partitioner, or if nil Sarama's default (FNV-1a hash of the key).
func ProduceSarama(t *testing.T, env *testenv.KafkaEnv, topic string, partitioner sarama.PartitionerConstructor, stream string, seqs ...int) {
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
		for _, h := range Contract(stream, seq) {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
		}
		if _, _, err := p.SendMessage(msg); err != nil {
			t.Fatalf("sarama: send %s#%d: %v", stream, seq, err)
		}
	}
}

// ProduceKafkaGo writes events seqs of stream with a kafka-go Writer using
// balancer, or if nil kafka-go's default (round robin), one message per
// call so that round robin sends each to the next partition.
func ProduceKafkaGo(t *testing.T, env *testenv.KafkaEnv, topic string, balancer kafkago.Balancer, stream string, seqs ...int) {
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
		for _, h := range Contract(stream, seq) {
			msg.Headers = append(msg.Headers, kafkago.Header{Key: h[0], Value: []byte(h[1])})
		}
		if err := w.WriteMessages(Ctx(t), msg); err != nil {
			t.Fatalf("kafka-go: write %s#%d: %v", stream, seq, err)
		}
	}
}

// RecordsOf reads the whole topic (every partition to its end) and returns
// the records keyed stream, in partition then offset order: the ground
// truth the tests compare the store with.
func RecordsOf(t *testing.T, env *testenv.KafkaEnv, topic, stream string) []Placed {
	t.Helper()
	ctx := Ctx(t)
	ends, err := env.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	// Appends are transactions: their markers occupy the last offsets.
	cl := env.Client(t, append(ConsumeFromStart(topic), kgo.KeepControlRecords())...)
	got := map[int32]int64{}
	var out []Placed
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
				out = append(out, Placed{r.Partition, r.Offset, HeaderOf(r, kafkastore.HeaderSequence)})
			}
		})
	}
	slices.SortFunc(out, func(a, b Placed) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out
}

// Placed is where a record of a stream sits in the topic.
type Placed struct {
	Partition int32
	Offset    int64
	Sequence  string
}

// ProduceFranz writes events seqs of stream with a franz-go client and its
// default partitioner (murmur2 of the key), as a second writer would.
func ProduceFranz(t *testing.T, env *testenv.KafkaEnv, topic, stream string, seqs ...int) {
	t.Helper()
	cl := env.Client(t, kgo.DefaultProduceTopic(topic))
	for _, seq := range seqs {
		r := &kgo.Record{Key: []byte(stream), Value: []byte("{}")}
		for _, h := range Contract(stream, seq) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		if err := cl.ProduceSync(Ctx(t), r).FirstErr(); err != nil {
			t.Fatalf("franz-go: produce %s#%d: %v", stream, seq, err)
		}
	}
}
