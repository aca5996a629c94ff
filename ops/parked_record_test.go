package ops_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
)

func TestParkedRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for i, v := range []string{"first", "the parked payload"} {
		rec := &kgo.Record{Topic: "events", Key: []byte("s1"), Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "n", Value: []byte{byte('0' + i)}}}}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	store := memcontrol.NewStore()
	adm := kadm.NewClient(cl)
	c, err := ops.New(ops.Config{Admin: store, Topic: "events", Seeds: cluster.ListenAddrs(), Kafka: adm})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Park(ctx, "billing", controlplane.ParkedStream{StreamID: "s1", Sequence: 2, Reason: controlplane.ParkApplyFailed, Error: "boom",
		ParkedAt: time.Now(), Position: &framework.Position{Partition: 0, Offset: 1}}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.ParkedRecord(ctx, "billing", "s1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.Value) != "the parked" || rec.ValueSize != 18 || rec.Offset != 1 || len(rec.Headers) != 1 || string(rec.Headers[0].Value) != "1" || string(rec.Key) != "s1" {
		t.Errorf("record = %+v", rec)
	}
	if _, err := c.ParkedRecord(ctx, "billing", "s2", 10); !errors.Is(err, ops.ErrNotFound) {
		t.Errorf("a stream not parked: %v", err)
	}
	// Parked beyond the partition's end (the topic was recreated): not
	// found at once, not after a read that waits for the record.
	if err := store.Park(ctx, "billing", controlplane.ParkedStream{StreamID: "s3", Sequence: 1, Reason: controlplane.ParkApplyFailed,
		ParkedAt: time.Now(), Position: &framework.Position{Partition: 0, Offset: 50000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ParkedRecord(ctx, "billing", "s3", 10); !errors.Is(err, ops.ErrNotFound) {
		t.Errorf("a position beyond the end: %v, want ErrNotFound (without waiting for the record)", err)
	}
}
