package ops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv"
)

// TestOffsetResetWaitsForAMemberThatJoinedLate: a replica that read the
// control state just before a replay paused the replicas joins the group
// after the replay found it empty. The broker refuses the replay's reset of
// the offsets whole (UNKNOWN_MEMBER_ID, as CI saw); the replay must wait
// for the member to leave (it leaves at its first refused write) and reset
// then, instead of failing.
func TestOffsetResetWaitsForAMemberThatJoinedLate(t *testing.T) {
	env := testenv.Kafka(t)
	topic := env.Topic(t, "reset")
	group := topic + ".group"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	member := env.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.SessionTimeout(6*time.Second))
	go func() {
		for ctx.Err() == nil && !member.PollFetches(ctx).IsClientClosed() {
		}
	}()
	adm := kadm.NewClient(env.Client(t))
	c := &Client{cfg: Config{Kafka: adm, Topic: topic}}
	if err := c.WaitMembers(ctx, group, time.Minute); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	for p := range int32(3) {
		offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	err := c.commitOffsets(ctx, group, offsets)
	if !errors.Is(err, kerr.UnknownMemberID) && !errors.Is(err, kerr.IllegalGeneration) && !errors.Is(err, kerr.RebalanceInProgress) {
		t.Fatalf("a reset while a member is in the group: %v, want the broker's refusal", err)
	}
	go func() {
		time.Sleep(2 * time.Second)
		member.Close() // leaves the group
	}()
	if err := c.commitWhenEmpty(ctx, group, offsets, time.Minute); err != nil {
		t.Fatalf("reset once the member left: %v", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if o, ok := committed.Lookup(topic, p); !ok || o.At != 0 {
			t.Errorf("partition %d: committed %+v, want 0", p, o)
		}
	}
}
