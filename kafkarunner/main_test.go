package kafkarunner_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

func TestMain(m *testing.M) {
	if os.Getenv(envReplica) == "1" {
		os.Exit(replicaMain())
	}
	testenv.Main(m)
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store on a topic of its own, with 3 partitions.
func newStore(t testing.TB, cfg kafkastore.Config) (*kafkastore.Store, *testenv.KafkaEnv) {
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
	s, err := newGuarded(ctxFor(t), cfg)
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	t.Cleanup(s.Close)
	return s, env
}
