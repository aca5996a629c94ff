package chaos

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
)

func TestPoisonStreamNames(t *testing.T) {
	want := []string{"p-malformed-0001", "p-gap-0001", "p-conflict-0001", "p-misplaced-0001", "p-apply-0001"}
	var got []string
	for _, k := range PoisonKinds {
		got = append(got, PoisonStream(k, 1))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("poison streams %v, want %v", got, want)
	}
	if PoisonApplyError(framework.Event{Data: []byte("1")}) != nil || PoisonApplyError(framework.Event{Data: PoisonApplyPayload}) == nil {
		t.Fatal("PoisonApplyError must fail exactly on the poison payload")
	}
	// The poisoner's home partition (franz-go's murmur2) agrees with
	// kafkastore's.
	pz := newPoisoner(nil, "t", 3)
	for i := range 50 {
		s := PoisonStream(PoisonMisplaced, i)
		if pz.homeOf(s) != kafkastore.PartitionFor(s, 3) {
			t.Fatalf("%s: home %d, kafkastore says %d", s, pz.homeOf(s), kafkastore.PartitionFor(s, 3))
		}
	}
}

// TestPoisonSettle: a failed produce makes the case uncertain exactly where
// the ground truth is unknown.
func TestPoisonSettle(t *testing.T) {
	base := func() PoisonCase {
		c := PoisonCase{Kind: PoisonGap, Stream: "p-gap-0001", ParkedID: "p-gap-0001", GoodBefore: 3, ParkedAt: 5, Reason: controlplane.ParkGap, ExpectPark: true, Held: []uint64{6}}
		for _, r := range []struct {
			role string
			seq  uint64
		}{{roleGood, 1}, {roleGood, 2}, {roleGood, 3}, {rolePoison, 5}, {roleHeld, 6}} {
			c.Records = append(c.Records, PoisonRecord{Role: r.role, Sequence: r.seq, Attempted: true, Acked: true})
		}
		return c
	}
	fail := func(c PoisonCase, i int, attempted bool) PoisonCase {
		for j := i; j < len(c.Records); j++ {
			c.Records[j].Acked, c.Records[j].Attempted = false, false
		}
		c.Records[i].Attempted = attempted
		c.settle()
		return c
	}
	c := base()
	c.settle()
	if !c.ExpectPark || c.Uncertain || c.GoodBefore != 3 {
		t.Errorf("all acked: %+v", c)
	}
	if c := fail(base(), 1, true); c.ExpectPark || !c.Uncertain || c.GoodBefore != 1 || c.MayApply != 2 || c.ParkMaybe {
		t.Errorf("good 2 failed: %+v", c)
	}
	if c := fail(base(), 1, false); c.ExpectPark || c.Uncertain || c.GoodBefore != 1 || c.MayApply != 0 {
		t.Errorf("good 2 not sent: %+v", c)
	}
	if c := fail(base(), 3, true); c.ExpectPark || !c.Uncertain || !c.ParkMaybe || c.GoodBefore != 3 || c.MayApply != 0 {
		t.Errorf("poison failed: %+v", c)
	}
	if c := fail(base(), 4, true); !c.ExpectPark || c.Uncertain || c.GoodBefore != 3 {
		t.Errorf("held failed: %+v", c)
	}
}

// TestPoisonCheckerFindsViolations proves checkPoison is not vacuous:
// applied counts and parks written by hand.
func TestPoisonCheckerFindsViolations(t *testing.T) {
	_, rds := realServers(t)
	ctx := t.Context()
	const projection = "poison-counter"
	store, p, closeFn, err := openProjection(rds.Addr, rds.Prefix(t), projection)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	gap := PoisonCase{Kind: PoisonGap, Stream: "p-gap-0001", ParkedID: "p-gap-0001", GoodBefore: 3, ParkedAt: 5, Reason: controlplane.ParkGap, ExpectPark: true, Held: []uint64{6}}
	conflict := PoisonCase{Kind: PoisonConflict, Stream: "p-conflict-0001", ParkedID: "p-conflict-0001", GoodBefore: 3, ParkedAt: 3, Reason: controlplane.ParkConflict, ExpectPark: true, Held: []uint64{4, 5}}
	apply := PoisonCase{Kind: PoisonApplyFailed, Stream: "p-apply-0001", ParkedID: "p-apply-0001", GoodBefore: 3, ParkedAt: 4, Reason: controlplane.ParkApplyFailed, Attempts: 5, ExpectPark: true, Held: []uint64{5}}
	maybe := PoisonCase{Kind: PoisonApplyFailed, Stream: "p-apply-0002", ParkedID: "p-apply-0002", GoodBefore: 3, ParkedAt: 4, Reason: controlplane.ParkApplyFailed, Uncertain: true, ParkMaybe: true, Held: []uint64{5}}
	misplaced := PoisonCase{Kind: PoisonMisplaced, Stream: "p-misplaced-0001", ParkedID: "misplaced/2/p-misplaced-0001", GoodBefore: 3, ParkedAt: 4, Reason: controlplane.ParkMisplaced, ExpectPark: true, Held: []uint64{5}}
	mayOnce := PoisonCase{Kind: PoisonMalformed, Stream: "p-malformed-0001", ParkedID: "p-malformed-0001", GoodBefore: 1, Uncertain: true, MayApply: 2}
	mayTwice := PoisonCase{Kind: PoisonMalformed, Stream: "p-malformed-0002", ParkedID: "p-malformed-0002", GoodBefore: 1, Uncertain: true, MayApply: 2}
	notSent := PoisonCase{Kind: PoisonMalformed, Stream: "p-malformed-0003", ParkedID: "p-malformed-0003", GoodBefore: 3}

	for stream, fields := range map[string][]any{
		gap.Stream:       {"1", 1, "2", 1, "3", 1, "6", 1}, // held 6 applied (HINCRBY by hand below too)
		conflict.Stream:  {"1", 1, "3", 2},                 // 2 lost, 3 twice
		apply.Stream:     {"1", 1, "2", 1, "3", 1},
		maybe.Stream:     {"1", 1, "2", 1, "3", 1},
		misplaced.Stream: {"1", 1, "2", 1, "3", 1},
		mayOnce.Stream:   {"1", 1, "2", 1},
		mayTwice.Stream:  {"1", 1, "2", 2},
		notSent.Stream:   {"1", 1, "2", 1, "3", 1},
	} {
		if err := rds.Client.HSet(ctx, p.Key(AppliedKeyPart, stream), fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rds.Client.HIncrBy(ctx, p.Key(AppliedKeyPart, apply.Stream), "5", 1).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, ps := range []controlplane.ParkedStream{
		// gap: not parked at all.
		{StreamID: conflict.Stream, Sequence: 3, Reason: controlplane.ParkApplyFailed, Error: "x", ParkedAt: now}, // wrong reason
		{StreamID: apply.Stream, Sequence: 4, Reason: controlplane.ParkApplyFailed, Attempts: 2, Error: "x", ParkedAt: now},
		// maybe: not parked, fine.
		{StreamID: misplaced.ParkedID, Sequence: 4, Reason: controlplane.ParkMisplaced, Error: "x", ParkedAt: now},
		{StreamID: misplaced.Stream, Sequence: 5, Reason: controlplane.ParkGap, Error: "y", ParkedAt: now}, // the stream itself: wrong
		{StreamID: notSent.Stream, Sequence: 4, Reason: controlplane.ParkMalformed, Error: "z", ParkedAt: now},
	} {
		if err := store.Park(ctx, projection, ps); err != nil {
			t.Fatal(err)
		}
	}
	got, err := checkPoison(ctx, store, p, projection, rds.Client, []PoisonCase{gap, conflict, apply, maybe, misplaced, mayOnce, mayTwice, notSent})
	if err != nil {
		t.Fatal(err)
	}
	var short []Violation
	for _, v := range got {
		short = append(short, v.Violation)
		t.Logf("%-16s %s seq %d count %d: %s", v.Kind, v.Stream, v.Sequence, v.Count, v.Detail)
	}
	want := []Violation{
		{Kind: "unexpected", Stream: gap.Stream, Sequence: 6, Count: 1},
		{Kind: "not-parked", Stream: gap.Stream, Sequence: 5},
		{Kind: "lost", Stream: conflict.Stream, Sequence: 2},
		{Kind: "duplicated", Stream: conflict.Stream, Sequence: 3, Count: 2},
		{Kind: "not-parked", Stream: conflict.Stream, Sequence: 3},
		{Kind: "unexpected", Stream: apply.Stream, Sequence: 5, Count: 1},
		{Kind: "not-parked", Stream: apply.Stream, Sequence: 4},
		{Kind: "unexpected-park", Stream: misplaced.Stream, Sequence: 5},
		{Kind: "duplicated", Stream: mayTwice.Stream, Sequence: 2, Count: 2},
		{Kind: "unexpected-park", Stream: notSent.Stream, Sequence: 4},
	}
	if !reflect.DeepEqual(short, want) {
		t.Fatalf("violations\n%+v\nwant\n%+v", short, want)
	}
}

// TestPoisonParks writes each kind of poison record, next to a workload
// stream, and runs one in-process runner with the counting projection (with
// the poison apply) until the poison stream is parked and every record is
// processed: checkPoison must find nothing, the workload stream must be
// applied whole. The subtest "all" puts every kind on one topic.
func TestPoisonParks(t *testing.T) {
	kafka, rds := realServers(t)
	run := func(t *testing.T, kinds []string) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		const partitions = 3
		topic := kafka.TopicName(t, "poison")
		st, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: kafka.Seeds, Topic: topic, Partitions: partitions, ReplicationFactor: -1})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		group := GroupName(topic)
		adm := kafka.Admin(t)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, _ = adm.DeleteGroups(ctx, group)
		})
		cl := kafka.Client(t, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(0))
		pz := newPoisoner(cl, topic, partitions)
		defer pz.Close()
		var cases []PoisonCase
		for _, kind := range kinds {
			c, err := pz.inject(ctx, kind)
			if err != nil {
				t.Fatal(err)
			}
			if !c.ExpectPark || c.Uncertain {
				t.Fatalf("a produce failed: %+v", c)
			}
			cases = append(cases, c)
		}
		// A workload stream after the poison: it must flow.
		const good = 3
		for seq := uint64(1); seq <= good; seq++ {
			if err := cl.ProduceSync(ctx, record(StreamName(0), seq)).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}

		const projection = "poison-counter"
		store, _, closeFn, err := openProjection(rds.Addr, rds.Prefix(t), projection)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		p, err := store.NewAtomicProjection(projection, countingApplyWithPoison)
		if err != nil {
			t.Fatal(err)
		}
		logger := slog.New(slog.DiscardHandler)
		if os.Getenv("PROJECTOR_TEST_RUNNER_LOG") != "" {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		// As the chaos worker's runner (default retry policy).
		r, err := kafkarunner.New(kafkarunner.Config{
			Seeds: kafka.Seeds, Topic: topic, Group: group, Projection: p, Checkpoints: store,
			ReplicaID: "poison-test", ShutdownTimeout: 20 * time.Second, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		stopped := false
		stopRunner := func() {
			if stopped {
				return
			}
			stopped = true
			stop()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("runner: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the runner did not stop within 30s")
			}
		}
		defer stopRunner()

		// Parked, and every record processed (the group's lag 0: held
		// records are committed past too).
		want := map[string]bool{}
		for _, c := range cases {
			want[c.ParkedID] = true
		}
		cl2 := kadm.NewClient(cl)
		var lastParked []controlplane.ParkedStream
		var lastLag int64
		deadline := time.Now().Add(90 * time.Second)
		for {
			parked, err := store.Parked(ctx, projection)
			if err == nil {
				lastParked = parked
			}
			n := 0
			for _, ps := range parked {
				if want[ps.StreamID] {
					n++
				}
			}
			lag, lerr := groupLag(ctx, cl2, group, topic)
			lastLag = lag
			if n == len(want) && lerr == nil && lag == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 90s: parked %+v (want %v), lag %d (%v)", lastParked, want, lastLag, lerr)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second) // a held event applied late would show
		stopRunner()

		got, err := checkPoison(ctx, store, p, projection, rds.Client, cases)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range got {
			t.Errorf("%s %s seq %d count %d: %s", v.Kind, v.Stream, v.Sequence, v.Count, v.Detail)
		}
		applied, err := rds.Client.HGetAll(ctx, p.Key(AppliedKeyPart, StreamName(0))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if wantApplied := map[string]string{"1": "1", "2": "1", "3": "1"}; !reflect.DeepEqual(applied, wantApplied) {
			t.Errorf("workload stream %s applied %v, want %v", StreamName(0), applied, wantApplied)
		}
		for _, ps := range lastParked {
			if !want[ps.StreamID] {
				t.Errorf("unexpected park %+v", ps)
			}
		}
		if t.Failed() {
			for _, c := range cases {
				t.Logf("case %+v", c)
			}
			for _, ps := range lastParked {
				t.Logf("parked %+v", ps)
			}
		}
	}
	for _, kind := range PoisonKinds {
		t.Run(kind, func(t *testing.T) { run(t, []string{kind}) })
	}
	t.Run("all", func(t *testing.T) { run(t, slices.Clone(PoisonKinds)) })
}
