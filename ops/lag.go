package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Lag is how far a consumer group is behind a topic.
type Lag struct {
	Group string
	Topic string
	// GroupState is Kafka's state of the group ("Stable", "Empty",
	// "Dead", ...).
	GroupState string
	// Members are the group's members, with the topic's partitions
	// assigned to each.
	Members []Member
	// Partitions holds every partition of the topic, by partition.
	Partitions []PartitionLag
	// Total is the sum of the partitions' lags (those that could be
	// measured).
	Total int64
}

// Member is one member of the consumer group.
type Member struct {
	ID         string  `json:"id"`
	ClientID   string  `json:"client_id"`
	Host       string  `json:"host"`
	Partitions []int32 `json:"partitions"`
}

// PartitionLag is one partition's progress.
type PartitionLag struct {
	Partition int32 `json:"partition"`
	// Committed is the group's committed offset (-1: nothing committed).
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	// Lag is End minus Committed, or minus the partition's start where
	// nothing is committed, never below 0; -1 when it could not be
	// measured (see Error).
	Lag    int64  `json:"lag"`
	Member string `json:"member,omitempty"` // the client ID of the member it is assigned to
	// Progress is the next offset the read model in the control plane's
	// store covers (-1: none recorded); a committed offset above it means
	// the store lost state the offset relies on. Filled by
	// [Client.Status] only.
	Progress  int64  `json:"progress"`
	StateLost bool   `json:"state_lost,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ByPartition returns the lag of each partition whose lag was measured.
func (l Lag) ByPartition() map[int32]int64 {
	out := make(map[int32]int64, len(l.Partitions))
	for _, p := range l.Partitions {
		if p.Lag >= 0 {
			out[p.Partition] = p.Lag
		}
	}
	return out
}

// GroupLag measures how far group is behind topic, with kadm's group lag
// (kadm.CalculateGroupLagWithStartOffsets): per partition the end offset
// minus the group's committed offset, or minus the partition's start
// offset where the group committed nothing. Partitions neither assigned
// nor committed are measured the same way, so that every partition of the
// topic is listed. A group that does not exist has committed nothing.
//
// Runners commit an offset only after the cursors are stored, so a lag of
// 0 means every record up to the end was applied.
func GroupLag(ctx context.Context, adm *kadm.Client, topic, group string) (Lag, error) {
	l := Lag{Group: group, Topic: topic, Members: []Member{}, Partitions: []PartitionLag{}}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return l, fmt.Errorf("describe group %s: %w", group, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil // not created yet: nothing committed
	}
	if err != nil {
		return l, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return l, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return l, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	g := described[group]
	l.GroupState = g.State
	// Only this topic's commits: the lag of others is not asked for.
	mine := kadm.OffsetResponses{}
	if ps, ok := committed[topic]; ok {
		mine[topic] = ps
	}
	computed := kadm.CalculateGroupLagWithStartOffsets(g, mine, starts, ends)
	return assembleLag(l, g, computed, starts, ends), nil
}

// assembleLag builds the Lag from kadm's computation, adding the
// partitions of the topic that kadm does not list (neither assigned nor
// committed).
func assembleLag(l Lag, g kadm.DescribedGroup, computed kadm.GroupLag, starts, ends kadm.ListedOffsets) Lag {
	topic := l.Topic
	for _, m := range g.Members {
		mem := Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				if t.Topic == topic {
					mem.Partitions = append(mem.Partitions, t.Partitions...)
				}
			}
		}
		slices.Sort(mem.Partitions)
		l.Members = append(l.Members, mem)
	}
	ends.Each(func(e kadm.ListedOffset) {
		if e.Topic != topic {
			return
		}
		pl := PartitionLag{Partition: e.Partition, Committed: -1, End: e.Offset, Progress: -1}
		if m, ok := computed.Lookup(topic, e.Partition); ok {
			if m.Commit.At >= 0 {
				pl.Committed = m.Commit.At
			}
			if m.Member != nil {
				pl.Member = m.Member.ClientID
			}
			pl.Lag = m.Lag
			if m.Err != nil {
				pl.Error = m.Err.Error()
			}
		} else {
			// Neither assigned nor committed: from the start, as kadm
			// measures a partition without a commit.
			from := int64(0)
			if s, ok := starts.Lookup(topic, e.Partition); ok && s.Err == nil {
				from = s.Offset
			}
			pl.Lag = max(e.Offset-from, 0)
			if e.Err != nil {
				pl.Lag, pl.Error = -1, e.Err.Error()
			}
		}
		if pl.Lag > 0 {
			l.Total += pl.Lag
		}
		l.Partitions = append(l.Partitions, pl)
	})
	slices.SortFunc(l.Partitions, func(a, b PartitionLag) int { return int(a.Partition) - int(b.Partition) })
	return l
}
