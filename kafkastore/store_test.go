package kafkastore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/eventstoretest"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

func TestMain(m *testing.M) {
	if os.Getenv(envWriter) == "1" {
		os.Exit(writerMain())
	}
	testenv.Main(m)
}

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) framework.EventStore {
		s, _ := newStore(t, kafkastore.Config{})
		return s
	})
}

// TestSpecificationExampleOnKafka: list every process/ stream, run all
// streams, later catch up all streams from the returned checkpoint, through
// a second Store (another process) that only reads.
func TestSpecificationExampleOnKafka(t *testing.T) {
	writer, env := newStore(t, kafkastore.Config{})
	ctx := ctxFor(t)
	want := map[string]int{}
	for i := range 30 {
		tenant := []string{"acme", "zeta"}[i%2]
		id := fmt.Sprintf("process/%s/malo-%02d", tenant, i)
		n := i%4 + 1
		appendN(t, writer, id, n)
		want[id] = n
	}
	appendN(t, writer, "partner/acme/1", 3)

	reader, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: writer.Config().Topic, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	counts := &countingProjection{counts: map[string]int{}}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 4})
	res, err := runner.RunAllStreams(ctx, counts, reader, listAll(t, reader, framework.ProcessPrefix))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(counts.snapshot(), want) {
		t.Fatalf("counts after the run = %v, want %v", counts.snapshot(), want)
	}
	appendN(t, writer, "process/acme/malo-00", 2)
	appendN(t, writer, "process/zeta/new", 1)
	want["process/acme/malo-00"] += 2
	want["process/zeta/new"] = 1
	res, err = runner.CatchUpAllStreams(ctx, counts, reader, listAll(t, reader, framework.ProcessPrefix), res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 3 {
		t.Errorf("catch-up applied %d events, want 3", res.Applied)
	}
	if !maps.Equal(counts.snapshot(), want) {
		t.Errorf("counts after the catch-up = %v, want %v", counts.snapshot(), want)
	}
}

type countingProjection struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingProjection) Name() string { return "counts" }
func (c *countingProjection) Apply(_ context.Context, e framework.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[e.StreamID]++
	return nil
}
func (c *countingProjection) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

func appendN(t testing.TB, s framework.EventStore, id string, n int) []framework.Event {
	t.Helper()
	data := make([]framework.EventData, n)
	for i := range data {
		data[i] = framework.EventData{Type: "Counted", Data: []byte(strconv.Itoa(i))}
	}
	got, err := s.Append(ctxFor(t), id, framework.AnyVersion, data)
	if err != nil {
		t.Fatalf("Append(%s): %v", id, err)
	}
	return got
}

func listAll(t testing.TB, s framework.EventStore, prefix string) []string {
	t.Helper()
	var ids []string
	for id, err := range s.ListStreams(ctxFor(t), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestRecordsFollowTheContract(t *testing.T) {
	s, env := newStore(t, kafkastore.Config{})
	ctx := ctxFor(t)
	ids := []string{"process/acme/51238696788", "process/acme/x", "process/zeta/äöü", "a", "process/acme/a-much-longer-stream-id/2026-11"}
	for _, id := range ids {
		got, err := s.Append(ctx, id, framework.NoStream, []framework.EventData{
			{EventID: "ev-" + id, Type: "Opened", SchemaVersion: 3, Data: []byte(`{"x":1}`), Metadata: map[string]string{"tenant": "acme"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		// The partition is the one the Java clients' murmur2 partitioner picks.
		if want := kafkastore.PartitionFor(id, 3); got[0].Position.Partition != want {
			t.Errorf("%s went to partition %d, murmur2 says %d", id, got[0].Position.Partition, want)
		}
	}
	// Read the raw records with a plain consumer: the key and headers are
	// what another Kafka client would see.
	cl := env.Client(t, kgo.ConsumeTopics(s.Config().Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := 0
	for seen < len(ids) {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", seen, len(ids), err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			seen++
			headers := map[string]string{}
			for _, h := range r.Headers {
				headers[h.Key] = string(h.Value)
			}
			id := string(r.Key)
			if headers[kafkastore.HeaderStreamID] != id || headers[kafkastore.HeaderSequence] != "1" ||
				headers[kafkastore.HeaderEventID] != "ev-"+id || headers[kafkastore.HeaderType] != "Opened" ||
				headers[kafkastore.HeaderSchemaVersion] != "3" || headers[kafkastore.HeaderMetaPrefix+"tenant"] != "acme" {
				t.Errorf("record of %s has headers %v", id, headers)
			}
			if _, err := time.Parse(time.RFC3339Nano, headers[kafkastore.HeaderRecordedAt]); err != nil {
				t.Errorf("recorded-at header %q: %v", headers[kafkastore.HeaderRecordedAt], err)
			}
			e, err := kafkastore.DecodeRecord(r)
			if err != nil || e.StreamID != id || e.Metadata["tenant"] != "acme" || e.Position.Offset != r.Offset {
				t.Errorf("DecodeRecord = %+v, %v", e, err)
			}
		})
	}
}

func TestReadStreamReadsOnlyItsStream(t *testing.T) {
	// One partition: every stream interleaves with the others.
	s, _ := newStore(t, kafkastore.Config{Partitions: 1})
	ctx := ctxFor(t)
	for round := range 5 {
		for _, id := range []string{"process/t/a", "process/t/b", "process/t/c"} {
			appendN(t, s, id, round+1)
		}
	}
	var seqs []uint64
	for e, err := range s.ReadStream(ctx, "process/t/b", 4) {
		if err != nil {
			t.Fatal(err)
		}
		if e.StreamID != "process/t/b" {
			t.Fatalf("ReadStream of b yielded an event of %s", e.StreamID)
		}
		seqs = append(seqs, e.Sequence)
	}
	if want := []uint64{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; !slices.Equal(seqs, want) {
		t.Errorf("sequences %v, want %v", seqs, want)
	}
	// Its first record follows a's first append (and that transaction's
	// marker).
	var first int64 = -1
	for e, err := range s.ReadStream(ctx, "process/t/b", 0) {
		if err != nil {
			t.Fatal(err)
		}
		first = e.Position.Offset
		break
	}
	entry, ok, err := s.Entry(ctx, "process/t/b")
	if err != nil || !ok || entry.HeadSequence != 15 || entry.FirstOffset != first || first < 1 {
		t.Errorf("catalog entry = %+v, %v, %v; want head 15, first offset %d", entry, ok, err, first)
	}
}

func TestCatalogIsSharedAndRebuildable(t *testing.T) {
	s, env := newStore(t, kafkastore.Config{})
	ctx := ctxFor(t)
	for i := range 20 {
		appendN(t, s, fmt.Sprintf("process/t/%02d", i), i%3+1)
	}
	// Another store on the same topics sees every stream through the
	// catalog, and appends continue its sequences.
	other, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: s.Config().Topic})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := listAll(t, other, "process/t/"); len(got) != 20 {
		t.Fatalf("the second store lists %d streams, want 20", len(got))
	}
	if v, _ := other.StreamVersion(ctx, "process/t/05"); v != 3 {
		t.Errorf("StreamVersion seen by the second store = %d, want 3", v)
	}

	// A store whose catalog topic is empty rebuilds it from the events.
	fresh, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: s.Config().Topic, CatalogTopic: s.Config().Topic + ".catalog-rebuilt"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got := listAll(t, fresh, "process/"); len(got) != 0 {
		t.Fatalf("an empty catalog lists %d streams", len(got))
	}
	// A record that breaks the contract, written by someone else.
	raw := env.Client(t)
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: s.Config().Topic, Key: []byte("process/t/foreign"), Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep, err := fresh.RebuildCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 20 || rep.Records != 40 || rep.MalformedCount != 1 || len(rep.Anomalies) != 0 {
		t.Errorf("rebuild report %+v, want 20 streams, 40 records, 1 malformed", rep)
	}
	if rep.MalformedCount == 1 && !strings.Contains(rep.Malformed[0].Error(), kafkastore.HeaderStreamID) {
		t.Errorf("malformed record reported as %v", rep.Malformed[0])
	}
	for i := range 20 {
		id := fmt.Sprintf("process/t/%02d", i)
		a, _, _ := s.Entry(ctx, id)
		b, _, _ := fresh.Entry(ctx, id)
		if a != b {
			t.Errorf("rebuilt entry of %s = %+v, original %+v", id, b, a)
		}
	}
	// The rebuilt catalog was written to its topic: a third store sees it.
	third, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: s.Config().Topic, CatalogTopic: s.Config().Topic + ".catalog-rebuilt"})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if got := listAll(t, third, "process/"); len(got) != 20 {
		t.Errorf("the rebuilt catalog topic lists %d streams, want 20", len(got))
	}
}

func TestTopicSettingsAreChecked(t *testing.T) {
	env := testenv.Kafka(t)
	ctx := ctxFor(t)
	retention := "3600000"
	tests := []struct {
		name    string
		configs map[string]*string
		cfg     kafkastore.Config
		want    string
	}{
		{"compacted event topic", map[string]*string{"cleanup.policy": ptr("compact")}, kafkastore.Config{}, "compaction would delete events"},
		{"finite retention", map[string]*string{"retention.ms": &retention}, kafkastore.Config{}, "retention.ms is 3600000"},
		{"partition count", map[string]*string{"retention.ms": ptr("-1")}, kafkastore.Config{Partitions: 6}, "has 3 partitions, configured 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := env.CreateTopic(t, "events", 3, tt.configs)
			cfg := tt.cfg
			cfg.Seeds, cfg.Topic = env.Seeds, topic
			_, err := newGuarded(ctx, cfg)
			if !errors.Is(err, kafkastore.ErrTopicSettings) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), topic) {
				t.Errorf("New = %v, want ErrTopicSettings naming %s and %q", err, topic, tt.want)
			}
		})
	}
	t.Run("finite retention allowed", func(t *testing.T) {
		topic := env.CreateTopic(t, "events", 3, map[string]*string{"retention.ms": &retention})
		s, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: topic, AllowFiniteRetention: true})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
	t.Run("catalog not compacted", func(t *testing.T) {
		topic := env.TopicName(t, "events")
		env.CreateTopic(t, "unused", 1, nil) // keep CreateTopic's cleanup symmetrical
		admin := env.Admin(t)
		if _, err := admin.CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": ptr("delete")}, topic+".catalog"); err != nil {
			t.Fatal(err)
		}
		_, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: topic})
		if !errors.Is(err, kafkastore.ErrTopicSettings) || !strings.Contains(err.Error(), `want "compact"`) {
			t.Errorf("New = %v, want the catalog's cleanup.policy named", err)
		}
	})
	t.Run("missing topic not created", func(t *testing.T) {
		_, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: env.TopicName(t, "events"), DontCreateTopics: true})
		if !errors.Is(err, kafkastore.ErrTopicSettings) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("New = %v, want a clear error", err)
		}
	})
	t.Run("created topics", func(t *testing.T) {
		s, _ := newStore(t, kafkastore.Config{Partitions: 5})
		configs, err := env.Admin(t).DescribeTopicConfigs(ctx, s.Config().Topic, s.Config().CatalogTopic)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, rc := range configs {
			for _, c := range rc.Configs {
				if c.Key == "cleanup.policy" || c.Key == "retention.ms" {
					got[rc.Name+" "+c.Key] = *c.Value
				}
			}
		}
		want := map[string]string{
			s.Config().Topic + " cleanup.policy": "delete", s.Config().Topic + " retention.ms": "-1",
			s.Config().CatalogTopic + " cleanup.policy": "compact", s.Config().CatalogTopic + " retention.ms": got[s.Config().CatalogTopic+" retention.ms"],
		}
		if !maps.Equal(got, want) {
			t.Errorf("topic configs = %v, want %v", got, want)
		}
	})
}

func ptr(s string) *string { return &s }

func TestConfigValidateJoinsProblems(t *testing.T) {
	_, err := newGuarded(context.Background(), kafkastore.Config{Partitions: -1})
	for _, part := range []string{"Seeds", "Topic", "Partitions"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("error %v does not name %s", err, part)
		}
	}
}
