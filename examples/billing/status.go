package main

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/ops"
)

// groupLag measures how far the consumer group is behind the topic, with
// ops.GroupLag (kadm's group lag): per partition the end offset minus the
// group's committed offset (the start offset where the group committed
// nothing). The runner commits only after the cursors are stored, so a lag
// of 0 means every record is applied. It returns the total (-1 when it
// could not be measured) and the lag of each partition.
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (int64, map[int32]int64, error) {
	l, err := ops.GroupLag(ctx, adm, topic, group)
	if err != nil {
		return -1, nil, err
	}
	return l.Total, l.ByPartition(), nil
}

// statusOf reports GET /api/v1/status: the projection's status from the
// operations library (client, nil when this process has no Kafka admin
// client) and the runner replicas of this process. runners is called per
// request, so that replicas may come and go; it may be nil. state, when
// set, is the process's word for its state.
func statusOf(client *ops.Client, projection string, runners func() []*kafkarunner.Runner, state func() string) api.StatusFunc {
	return func(ctx context.Context) (api.Status, error) {
		st := api.Status{UpdatedAt: time.Now().UTC()}
		st.Projection = projection
		if client != nil {
			ps, err := client.Status(ctx, projection)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Status = ps
			}
		}
		var rs []*kafkarunner.Runner
		if runners != nil {
			rs = runners()
		}
		for _, r := range rs {
			s := r.Stats()
			rep := api.Replica{ID: r.ReplicaID(), State: r.State(), Partitions: r.Assigned(), Applied: s.Applied, Skipped: s.Skipped,
				ParkedEvents: s.Parked, Held: s.Held, LastError: r.LastError()}
			slices.Sort(rep.Partitions)
			if rep.Partitions == nil {
				rep.Partitions = []int32{}
			}
			if err := r.Ready(ctx); err != nil {
				rep.NotReady = err.Error()
			}
			st.Local.Applied += s.Applied
			st.Local.Skipped += s.Skipped
			st.Local.ParkedEvents += s.Parked
			st.Local.Held += s.Held
			st.Local.Replicas = append(st.Local.Replicas, rep)
		}
		switch {
		case state != nil:
			st.Local.State = state()
		case len(rs) > 0:
			st.Local.State = rs[0].State()
		default:
			st.Local.State = "not run by this process"
		}
		return st, nil
	}
}
