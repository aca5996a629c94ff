package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
)

// TestParkedSkipOfAGap: a gap at a stream's end (sequence 3 after 1; 2 was
// never written) cannot be skipped unchecked: nothing in Kafka shows the
// stream past 1. parked list shows the skip requested until the replica
// carried it out; --force skips it and the replica applies 3.
func TestParkedSkipOfAGap(t *testing.T) {
	f := newFixture(t)
	const id = "process/gap/a"
	cl := f.kafka.Client(t)
	for _, seq := range []int{1, 3} {
		rec := &kgo.Record{Topic: f.store.Config().Topic, Key: []byte(id), Headers: []kgo.RecordHeader{
			{Key: kafkastore.HeaderStreamID, Value: []byte(id)},
			{Key: kafkastore.HeaderSequence, Value: []byte(strconv.Itoa(seq))},
			{Key: kafkastore.HeaderEventID, Value: []byte("g" + strconv.Itoa(seq))},
			{Key: kafkastore.HeaderType, Value: []byte("Counted")},
		}}
		if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	f.produced[id] = 1
	rep := f.start(false)
	f.waitCounts(time.Minute)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if parked, _ := rep.r.Parked(context.Background()); len(parked) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gap was not parked")
		}
	}
	code, _, errOut := f.ctl("", "parked", "skip", f.name, id, "--reason", "event 2 was lost (incident 9)")
	if code == exitOK || !strings.Contains(errOut, "no sequence above 1") || !strings.Contains(errOut, "--force") {
		t.Fatalf("unchecked skip of a gap: exit %d, %q", code, errOut)
	}
	// The replica is stopped: the request waits for an owner.
	rep.stop()
	if code, out, errOut := f.ctl("", "parked", "skip", f.name, id, "--reason", "event 2 was lost (incident 9)", "--force"); code != exitOK || !strings.Contains(out, "recorded") {
		t.Fatalf("forced skip: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ := f.ctl("", "parked", "list", f.name); code != exitOK || !strings.Contains(out, "skip requested by tester") {
		t.Fatalf("parked list = %d:\n%s", code, out)
	}
	f.produced[id] = 2
	f.start(false)
	f.waitCounts(time.Minute)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, out, _ := f.ctl("", "parked", "list", f.name, "-o", "json"); code == exitOK && strings.TrimSpace(out) == "[]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream is still parked")
		}
	}
}
