package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// TestCatalogRebuildReportsForeignPlacement: a stream written by Sarama's
// default partitioner (FNV-1a) sits off its key's murmur2 partition;
// `catalog rebuild` prints it on one escaped line and exits 5, and exits 0
// while the topic holds only the store's own streams.
func TestCatalogRebuildReportsForeignPlacement(t *testing.T) {
	f := newFixture(t)
	if !f.kafka.Real {
		t.Skip("Sarama's placement is checked against a real Kafka")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := f.store.Append(ctx, "process/t/own", framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Counted"}}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := f.ctl("", "catalog", "rebuild")
	if code != exitOK || !strings.Contains(stdout, ": 1 streams, 2 records\n") || !strings.Contains(stdout, "anomalies: 0\n") {
		t.Fatalf("rebuild of a clean topic: exit %d\n%s%s", code, stdout, stderr)
	}

	// A zero-width space is no control character, so the stream ID is
	// valid, but it must not reach the terminal raw.
	var stream string
	for i := range 100 {
		id := fmt.Sprintf("process/t/\u200bforeign-%d", i)
		if fnvPartition(id, 4) != kafkastore.PartitionFor(id, 4) {
			stream = id
			break
		}
	}
	produceSaramaDefault(t, f.kafka.Seeds, f.store.Config().Topic, stream, 3)

	code, stdout, stderr = f.ctl("", "catalog", "rebuild")
	wantLine := fmt.Sprintf("off-home: stream %s is on partition %d (3 records from offset 0), its key's murmur2 partition is %d\n",
		strconv.Quote(stream), fnvPartition(stream, 4), kafkastore.PartitionFor(stream, 4))
	if code != exitAnomalies || !strings.Contains(stdout, "anomalies: 1\n"+wantLine) || strings.Contains(stdout, "\u200b") ||
		!strings.Contains(stderr, "1 anomalies") {
		t.Errorf("rebuild: exit %d, want %d and the line %q\nstdout:\n%s\nstderr:\n%s", code, exitAnomalies, wantLine, stdout, stderr)
	}
	t.Logf("stdout:\n%s", stdout)

	code, stdout, _ = f.ctl("", "catalog", "rebuild", "-o", "json")
	var rep rebuildReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout)
	}
	if code != exitAnomalies || rep.Streams != 2 || rep.Records != 5 || rep.AnomalyCount != 1 || len(rep.Anomalies) != 1 ||
		rep.Anomalies[0].StreamID != stream || rep.Anomalies[0].Kind != kafkastore.AnomalyOffHome ||
		rep.Anomalies[0].Partition != fnvPartition(stream, 4) || rep.Anomalies[0].ExpectedPartition != kafkastore.PartitionFor(stream, 4) {
		t.Errorf("-o json: exit %d, %+v", code, rep)
	}
}

// fnvPartition is Sarama's default hash partitioner.
func fnvPartition(key string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// produceSaramaDefault writes events 1..n of stream, following the header
// contract, with Sarama's default partitioner.
func produceSaramaDefault(t *testing.T, seeds []string, topic, stream string, n int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(seeds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for seq := 1; seq <= n; seq++ {
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(stream), Value: sarama.StringEncoder("{}")}
		for k, v := range map[string]string{
			kafkastore.HeaderStreamID: stream, kafkastore.HeaderSequence: strconv.Itoa(seq),
			kafkastore.HeaderEventID: fmt.Sprintf("e%d", seq), kafkastore.HeaderType: "Counted",
		} {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
		if _, _, err := p.SendMessage(msg); err != nil {
			t.Fatal(err)
		}
	}
}
