package kafkaio

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestListOffsetsRetriesAMovingLeader: right after a topic is created, or
// while the controller moves a dead broker's partitions, a partition
// answers NOT_LEADER_OR_FOLLOWER; the fault suite's 3-broker cluster made
// kafkastore.New fail on it. ListOffsets asks again until the answer has
// no retriable error, and returns a permanent one at once.
func TestListOffsetsRetriesAMovingLeader(t *testing.T) {
	calls := 0
	list := func(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
		calls++
		o := kadm.ListedOffset{Topic: topics[0], Partition: 0, Offset: 7}
		if calls < 3 {
			o.Err = kerr.NotLeaderForPartition
		}
		return kadm.ListedOffsets{topics[0]: {0: o}}, nil
	}
	got, err := ListOffsets(t.Context(), list, "t")
	if err != nil || calls != 3 || got.Error() != nil || got["t"][0].Offset != 7 {
		t.Fatalf("after %d calls: %v, %v", calls, got, err)
	}

	calls = 0
	permanent := func(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
		calls++
		return kadm.ListedOffsets{topics[0]: {0: {Topic: topics[0], Err: kerr.TopicAuthorizationFailed}}}, nil
	}
	if got, _ := ListOffsets(t.Context(), permanent, "t"); calls != 1 || got.Error() == nil {
		t.Fatalf("a permanent error was retried (%d calls) or lost: %v", calls, got)
	}
}
