package main

import (
	"context"
	"errors"
	"fmt"
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

// statusOf reports the runner replicas of this process and the group's lag
// for GET /api/v1/status. runners is called per request, so that replicas
// may come and go; the first one's group (the live version's) is measured,
// group where there is none. state, when set, names the state instead of
// the first replica's.
func statusOf(projection, group, topic string, adm *kadm.Client, runners func() []*kafkarunner.Runner, state func() string) api.StatusFunc {
	return func(ctx context.Context) (api.Status, error) {
		rs := runners()
		group := group
		if len(rs) > 0 {
			group = rs[0].Group() // the live version's group
		}
		st := api.Status{Projection: projection, Group: group, UpdatedAt: time.Now().UTC()}
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
			st.Applied += s.Applied
			st.Skipped += s.Skipped
			st.ParkedEvents += s.Parked
			st.Held += s.Held
			st.Replicas = append(st.Replicas, rep)
		}
		switch {
		case state != nil:
			st.State = state()
		case len(rs) > 0:
			st.State = rs[0].State()
		default:
			st.State = "no replica"
		}
		var errs []error
		if len(rs) > 0 {
			parked, err := rs[0].Parked(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("parked streams: %w", err))
			}
			st.Parked = len(parked)
			for _, p := range parked {
				st.ParkedStreams = append(st.ParkedStreams, api.ParkedStream{StreamID: p.StreamID, Sequence: p.Sequence, Type: p.Type,
					Reason: p.Reason, Error: p.Error, ParkedAt: p.ParkedAt})
			}
		}
		lag, per, err := groupLag(ctx, adm, group, topic)
		st.Lag, st.LagByPartition = lag, per
		if err != nil {
			st.LagError = err.Error()
		}
		return st, errors.Join(errs...)
	}
}
