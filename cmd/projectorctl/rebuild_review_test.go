package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// Regression tests from an adversarial review of the rebuild command.
//
// TestRebuildDropZero: after `rebuild --keep` from
// version 0, projectorctl itself says "delete it with projectorctl rebuild X
// --drop 0"; that command does not drop version 0: --drop 0 is taken as
// "no --drop" and a NEW rebuild starts (here with --yes, as a Job or a
// script would run it).
func TestRebuildDropZero(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(10, 2)
	f.startVersioned()
	f.waitCounts(time.Minute)

	code, out, errOut := f.ctl("", "rebuild", f.name, "--yes", "--wait", "--keep")
	if code != exitOK {
		t.Fatalf("rebuild --keep = %d\n%s%s", code, out, errOut)
	}
	t.Logf("rebuild --keep said:\n%s", out)
	if !strings.Contains(out, "--drop 0") {
		t.Fatalf("expected the hint to use --drop 0:\n%s", out)
	}
	code, out, errOut = f.ctl("", "rebuild", f.name, "--drop", "0", "--yes")
	t.Logf("rebuild --drop 0 --yes = %d\n%s%s", code, out, errOut)
	vs, err := f.rstore.Versions(context.Background(), f.name)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Building != nil {
		t.Errorf("`rebuild --drop 0` started a new rebuild %s instead of dropping version 0; retiring: %+v",
			framework.VersionedName(f.name, vs.Building.Version), vs.Retiring)
	}
	for _, r := range vs.Retiring {
		if r.Version == 0 && r.Keep {
			t.Errorf("version 0 is still kept (not made due for deletion): %+v", r)
		}
	}
}

// TestVersionArguments: commands given a versioned name do not
// check that the version exists or is open: a nonexistent version is paused
// and replayed (keys and a consumer group are created for it), and the
// replaced version 0 cannot be named at all.
func TestVersionArguments(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(10, 2)
	f.startVersioned()
	f.waitCounts(time.Minute)
	if code, out, errOut := f.ctl("", "rebuild", f.name, "--yes", "--wait", "--keep"); code != exitOK {
		t.Fatalf("rebuild --keep = %d\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"status", f.name + "@v0"}, exitOK},
		{[]string{"parked", "list", f.name + "@v0"}, exitOK},
		{[]string{"pause", f.name + "@v0", "--reason", "x"}, exitRefused}, // closed: replaced by v1
		{[]string{"replay", f.name + "@v0", "--yes"}, exitRefused},
		{[]string{"status", f.name + "@v7"}, exitNotFound},
		{[]string{"pause", f.name + "@v7", "--reason", "x"}, exitNotFound},
		{[]string{"replay", f.name + "@v7", "--yes", "--empty-timeout", "5s"}, exitNotFound},
	} {
		code, out, errOut := f.ctl("", c.args...)
		if code != c.code {
			t.Errorf("projectorctl %s = %d, want %d\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, out, errOut)
		}
	}
	groups, err := f.kafka.Admin(t).ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[f.name+"@v7"]; ok {
		t.Errorf("replay of the nonexistent version v7 created consumer group %s@v7", f.name)
	}
	keys, _ := f.redis.Client.Keys(context.Background(), f.ns+":{"+f.name+"}:v7:*").Result()
	if len(keys) > 0 {
		t.Errorf("commands on the nonexistent version v7 created keys %v", keys)
	}
}

// TestRebuildGraceValidation: --grace accepts 0 and negative durations
// (the replaced version is deleted at the next refresh after the switch,
// under queries that resolved it just before), and --wait-timeout 0 too.
func TestRebuildGraceValidation(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(2, 1)
	for _, g := range []string{"-5m", "0s"} {
		code, out, errOut := f.ctl("", "rebuild", f.name, "--dry-run", "--grace", g)
		t.Logf("rebuild --dry-run --grace %s = %d\n%s%s", g, code, out, errOut)
		if code == exitOK {
			t.Errorf("--grace %s accepted", g)
		}
	}
}

// TestReplayOfATruncatedTopic: an in-place replay "to the start" of
// a topic whose start offset is above 0 (retention with
// AllowFiniteRetention, DeleteRecords) drops the model and rebuilds it
// from the middle of the topic: the streams whose events are all gone
// vanish, and replay --wait reports success.
func TestReplayOfATruncatedTopic(t *testing.T) {
	f := newFixture(t)
	requireRealServers(t, f)
	f.produce(10, 2)
	f.start(false)
	f.waitCounts(time.Minute)
	adm := f.kafka.Admin(t)
	topic := f.store.Config().Topic
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if del, err := adm.DeleteRecords(context.Background(), ends.Offsets()); err != nil || del.Error() != nil {
		t.Fatal(err, del.Error())
	}
	cl := f.kafka.Client(t)
	for i := range 3 {
		id := fmt.Sprintf("process/new/%d", i)
		rec := &kgo.Record{Topic: topic, Key: []byte(id), Headers: []kgo.RecordHeader{
			{Key: kafkastore.HeaderStreamID, Value: []byte(id)}, {Key: kafkastore.HeaderSequence, Value: []byte("1")},
			{Key: kafkastore.HeaderEventID, Value: []byte(id)}, {Key: kafkastore.HeaderType, Value: []byte("Counted")}}}
		if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.produced[id] = 1
		f.mu.Unlock()
	}
	f.waitCounts(time.Minute)
	before := len(f.counts())
	code, out, errOut := f.ctl("", "replay", f.name, "--yes", "--wait")
	after := len(f.counts())
	if code != exitRefused || !strings.Contains(errOut, "no longer starts at offset 0") || after != before {
		t.Errorf("replay --wait of a truncated topic = %d (read model from %d streams to %d), want refused\n%s%s", code, before, after, out, errOut)
	}
}
