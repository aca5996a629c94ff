package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestKafkaIsReal proves, when real servers are required, that the cluster is an Apache Kafka
// 4.x broker and not kfake.
func TestKafkaIsReal(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t)
	t.Logf("Kafka from %s at %v: %s", k.Kind, k.Seeds, k.Info)
	if !testenv.RequireReal() {
		t.Skip("real servers not required (PROJECTOR_REQUIRE_REAL unset); nothing to prove")
	}
	if !k.Real || k.Kind == testenv.KindKfake || k.Info.IsKfake() {
		t.Fatalf("Kafka is kfake (kind %s, cluster %q), want a real broker", k.Kind, k.Info.ClusterID)
	}
	if got := k.Info.Major(); got != 4 {
		t.Fatalf("broker announces Kafka %q (major %d), want 4.x", k.Info.Version, got)
	}
	if k.Info.MetadataVersion < 0 {
		t.Fatalf("broker announces no metadata.version feature: not a KRaft broker")
	}
}

// TestRedisIsReal proves, when real servers are required, that the server is Redis and not
// miniredis (which has no INFO server section).
func TestRedisIsReal(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	ctx := context.Background()
	info, err := r.Client.Info(ctx, "server").Result()
	if err != nil && r.Real {
		t.Fatalf("INFO server: %v", err)
	}
	version := infoField(info, "redis_version")
	t.Logf("Redis from %s at %s: redis_version %q", r.Kind, r.Addr, version)
	if !testenv.RequireReal() {
		t.Skip("real servers not required (PROJECTOR_REQUIRE_REAL unset); nothing to prove")
	}
	if !r.Real || r.Kind == testenv.KindMiniredis {
		t.Fatalf("Redis is %s, want a real server", r.Kind)
	}
	if version == "" {
		t.Fatalf("INFO server has no redis_version: not a Redis server\n%s", info)
	}
}

func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

func TestKafkaProduceConsume(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t)
	topic := k.Topic(t, "roundtrip")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	producer := k.Client(t)
	want := &kgo.Record{Topic: topic, Key: []byte("process/t1/p1"), Value: []byte(t.Name())}
	if err := producer.ProduceSync(ctx, want).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	consumer := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no record consumed from %s: %v", topic, err)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		var got *kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { got = r })
		if got == nil {
			continue
		}
		if string(got.Key) != string(want.Key) || string(got.Value) != string(want.Value) || got.Offset != want.Offset {
			t.Fatalf("consumed %q=%q at %d, produced %q=%q at %d", got.Key, got.Value, got.Offset, want.Key, want.Value, want.Offset)
		}
		return
	}
}

func TestRedisSetGet(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	prefix := r.Prefix(t)
	ctx := context.Background()
	key := "projector:{" + prefix + "}:cursor"
	if err := r.Client.Set(ctx, key, "42", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := r.Client.Get(ctx, key).Result()
	if err != nil || got != "42" {
		t.Fatalf("GET %s = %q, %v; want 42", key, got, err)
	}
}

// TestIsolation checks that names differ between tests and runs, and that a test's keys are
// gone once it ends.
func TestIsolation(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	ctx := context.Background()
	var key string
	t.Run("writer", func(t *testing.T) {
		a, b := r.Prefix(t), r.Prefix(t)
		if a == b || !strings.HasPrefix(a, "TestIsolation_writer-") {
			t.Fatalf("prefixes %q and %q: want distinct, from the test name", a, b)
		}
		key = "x:{" + a + "}:y"
		if err := r.Client.Set(ctx, key, "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	})
	n, err := r.Client.Exists(ctx, key).Result()
	if err != nil || n != 0 {
		t.Fatalf("EXISTS %s after its test ended = %d, %v; want 0", key, n, err)
	}
}
