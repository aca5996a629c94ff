package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorkerProcess) == "1" {
		os.Exit(workerProcess())
	}
	testenv.Main(m)
}

// TestMonthThroughKafka appends a generated month to a Kafka topic through
// kafkastore, projects it from there into Redis, and compares the read
// model with the generator's expected totals: the path of "billing
// generate" and the demo, on the servers testenv finds.
func TestMonthThroughKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kafka := testenv.Kafka(t)
	redisEnv := testenv.Redis(t)
	events, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: kafka.Seeds, Topic: kafka.TopicName(t, "mabis"), Partitions: 3, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	month, _ := mabis.ParseMonth("2026-03")
	o := options{tenant: "netz-kafka", month: month, projection: redisEnv.Prefix(t)}
	want, stats, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: o.tenant, Month: month, MaLos: 30, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := openReadModel(o, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 4})
	prefix, _ := framework.TenantPrefix(o.tenant)
	res, err := runner.RunPrefix(ctx, rm.projection, events, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != int64(stats.Events) || res.Streams != stats.Streams {
		t.Errorf("applied %d events of %d streams, generated %d of %d", res.Applied, res.Streams, stats.Events, stats.Streams)
	}
	if err := want.Verify(ctx, rm.reader); err != nil {
		t.Fatal(err)
	}
}
