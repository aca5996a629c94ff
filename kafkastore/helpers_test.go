package kafkastore_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
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

// The Redis store offers every capability the runner looks for.
var (
	_ controlplane.CheckpointStore = (*redischeckpoint.Store)(nil)
	_ controlplane.Fencer          = (*redischeckpoint.Store)(nil)
	_ controlplane.ParkStore       = (*redischeckpoint.Store)(nil)
	_ controlplane.ControlStore    = (*redischeckpoint.Store)(nil)
	_ controlplane.HeadStore       = (*redischeckpoint.Store)(nil)
	_ controlplane.Pinger          = (*redischeckpoint.Store)(nil)
)
