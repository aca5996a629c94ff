package kafkarunner_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
)

// TestRunnerWithForeignProducers: the runner consumes records of the header
// contract written by Sarama (default partitioner: FNV-1a of the key, a
// whole stream off its murmur2 partition), kafka-go (default balancer:
// round robin, a stream split over every partition) and the Java client
// (default partitioner: murmur2). Java's stream is applied whole; no record
// off its home partition is ever applied: each parks a pseudo-stream of its
// partition, is counted as misplaced and dead-lettered; the split stream
// goes on at home up to its first missing event and parks there as a gap.
// Publishing the Sarama stream again with murmur2 and skipping the
// pseudo-stream repairs it.
func TestRunnerWithForeignProducers(t *testing.T) {
	f := newFixture(t, 3)
	ctx := ctxFor(t)
	topic := f.store.Config().Topic
	sar := offHomeStream(t, "process/sarama/", 3)
	produceSarama(t, f.env, topic, nil, sar, 1, 2, 3)
	const rr = "process/kafkago/rr"
	produceKafkaGo(t, f.env, topic, &kafkago.RoundRobin{}, rr, 1, 2, 3, 4, 5, 6)
	const java = "process/java/j"
	var recs []testenv.JavaRecord
	for seq := 1; seq <= 5; seq++ {
		r := testenv.JavaRecord{Topic: topic, Key: []byte(java), Value: []byte("{}")}
		for _, h := range contract(java, seq) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		recs = append(recs, r)
	}
	if _, err := testenv.JavaProducer(t, f.env).Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}

	// Ground truth from the topic.
	sarPart := saramaPartition(sar, 3)
	rrHome := kafkastore.PartitionFor(rr, 3)
	var rrApplied int64 // rr's records at home, in order from 1
	offHome := map[int32]int{}
	for _, r := range recordsOf(t, f.env, topic, rr) {
		if r.Partition != rrHome {
			offHome[r.Partition]++
			continue
		}
		if r.Sequence == fmt.Sprint(rrApplied+1) {
			rrApplied++
		}
	}
	if len(offHome) == 0 {
		t.Fatalf("round robin put every record of %s at home", rr)
	}

	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	want := map[string]int64{java: 5}
	if rrApplied > 0 {
		want[rr] = rrApplied
	}
	wantParked := map[string]string{fmt.Sprintf("misplaced/%d/%s", sarPart, sar): controlplane.ParkMisplaced, rr: controlplane.ParkGap}
	for part := range offHome {
		wantParked[fmt.Sprintf("misplaced/%d/%s", part, rr)] = controlplane.ParkMisplaced
	}
	f.waitCounts(t, p, want, time.Minute)
	waitFor(t, 30*time.Second, "the misplaced records and the gap are parked", func() (bool, string) {
		got := map[string]string{}
		for id, ps := range parkedByID(t, rep) {
			got[id] = ps.Reason
		}
		return fmt.Sprint(got) == fmt.Sprint(wantParked), fmt.Sprintf("parked %v, want %v", got, wantParked)
	})
	misplaced := int64(3)
	for _, n := range offHome {
		misplaced += int64(n)
	}
	waitFor(t, 10*time.Second, "every misplaced record counted", func() (bool, string) {
		st := rep.r.Stats()
		return st.Misplaced == misplaced, fmt.Sprintf("stats %+v, want %d misplaced", st, misplaced)
	})
	pseudo := fmt.Sprintf("misplaced/%d/%s", sarPart, sar)
	if e := parkedByID(t, rep)[pseudo].Error; !strings.Contains(e, "another partitioner") || !strings.Contains(e, fmt.Sprintf("lives in partition %d", kafkastore.PartitionFor(sar, 3))) {
		t.Errorf("the misplaced record's error says %q", e)
	}

	// The remedy: publish the events again with a murmur2 partitioner,
	// then skip the pseudo-stream.
	produceFranz(t, f.env, topic, sar, 1, 2, 3)
	want[sar] = 3
	f.waitCounts(t, p, want, 30*time.Second)
	if err := rep.r.SkipParked(ctx, pseudo, "test", "published again with murmur2"); err != nil {
		t.Fatal(err)
	}
	waitUnparked(t, rep, pseudo)
	f.settle(t, p, want)
}

// TestRunnerReportsStreamsTheCatalogLacks: a stream written by another
// producer is applied and reported as missing from the catalog (ListStreams
// does not list it); a stream appended through the Store is not reported.
func TestRunnerReportsStreamsTheCatalogLacks(t *testing.T) {
	defer kafkarunner.SetCatalogGrace(500 * time.Millisecond)()
	f := newFixture(t, 2)
	ctx := ctxFor(t)
	const foreign, own = "process/foreign/a", "process/own/a"
	produceFranz(t, f.env, f.store.Config().Topic, foreign, 1, 2)
	if _, err := f.store.Append(ctx, own, framework.NoStream, []framework.EventData{{Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	p, _ := f.fixableCounter(t)
	rep := f.start(t, p, nil)
	f.waitCounts(t, p, map[string]int64{foreign: 2, own: 1}, time.Minute)
	waitFor(t, 30*time.Second, "the foreign stream reported", func() (bool, string) {
		st := rep.r.Stats()
		return st.Uncataloged == 1, fmt.Sprintf("stats %+v, want 1 uncataloged", st)
	})
	time.Sleep(2 * time.Second)
	if st := rep.r.Stats(); st.Uncataloged != 1 {
		t.Errorf("stats %+v, want only the foreign stream reported", st)
	}
	if _, err := f.store.RebuildCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for id, err := range f.store.ListStreams(ctx, "process/") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, id)
	}
	if fmt.Sprint(listed) != fmt.Sprint([]string{foreign, own}) {
		t.Errorf("after a rebuild ListStreams = %v", listed)
	}
}
