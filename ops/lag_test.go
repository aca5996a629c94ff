package ops_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/ops"
)

// TestGroupLag: every partition of the topic is listed: committed ones
// from their commit, the others (also of a group that does not exist)
// from their start.
func TestGroupLag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p, n := range map[int32]int{0: 5, 1: 3, 2: 2} {
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "events", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	adm := kadm.NewClient(cl)

	l, err := ops.GroupLag(ctx, adm, "events", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != 10 || len(l.Partitions) != 3 || len(l.Members) != 0 {
		t.Errorf("lag of a group that does not exist = %+v", l)
	}
	for _, p := range l.Partitions {
		if p.Committed != -1 || p.Progress != -1 {
			t.Errorf("partition %+v: want nothing committed", p)
		}
	}

	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "events", Partition: 0, At: 4, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: "events", Partition: 2, At: 2, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx, "g", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	l, err = ops.GroupLag(ctx, adm, "events", "g")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 1, 1: 3, 2: 0}; !maps.Equal(l.ByPartition(), want) || l.Total != 4 {
		t.Errorf("lag = %v (total %d), want %v (total 4)", l.ByPartition(), l.Total, want)
	}
	if p := l.Partitions; p[0].Committed != 4 || p[1].Committed != -1 || p[2].Committed != 2 || p[0].End != 5 {
		t.Errorf("partitions = %+v", p)
	}
}
