package kafkarunner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

type nopProjection struct{}

func (nopProjection) Name() string                                 { return "caps" }
func (nopProjection) Apply(context.Context, framework.Event) error { return nil }

// A runner needs fencing, progress tracking and a shared parking store:
// a checkpoint store without them is refused at start, naming each,
// unless the runner is declared the only replica.
func TestRunnerRefusesAControlPlaneWithoutRequiredCapabilities(t *testing.T) {
	cfg := kafkarunner.Config{Seeds: []string{"127.0.0.1:1"}, Topic: "events", Projection: nopProjection{}, Checkpoints: plainCheckpoints{memstore.NewCheckpointStore()}}
	_, err := kafkarunner.New(cfg)
	if err == nil {
		t.Fatal("NewRunner accepted a checkpoint store without fencing, progress and parking")
	}
	for _, want := range []string{"no fencing", "no progress tracking", "no parking store", "SingleReplica"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}

	cfg.SingleReplica = true
	r, err := kafkarunner.New(cfg)
	if err != nil {
		t.Fatalf("SingleReplica: %v", err)
	}
	if caps := r.Capabilities(); caps.Fencing || caps.Progress || caps.Parking || caps.Control {
		t.Errorf("capabilities of a plain store: %s", caps)
	}
}

func TestRunnerFindsEveryCapabilityOfRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	r, err := kafkarunner.New(kafkarunner.Config{Seeds: []string{"127.0.0.1:1"}, Topic: "events", Projection: nopProjection{}, Checkpoints: store})
	if err != nil {
		t.Fatal(err)
	}
	want := kafkarunner.Capabilities{Fencing: true, Progress: true, Parking: true, Control: true, Heads: true, ServerCheck: true, Ping: true}
	if got := r.Capabilities(); got != want {
		t.Errorf("capabilities = %s, want %s", got, want)
	}
}

// plainCheckpoints is a checkpoint store with cursors and nothing else.
type plainCheckpoints struct{ *memstore.CheckpointStore }

func (p plainCheckpoints) Cursors(ctx context.Context, name string, ids []string) (map[string]uint64, error) {
	cp, err := p.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, id := range ids {
		if c := cp.Cursor(id); c > 0 {
			out[id] = c
		}
	}
	return out, nil
}
