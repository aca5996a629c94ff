package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// TestReadYourWrites runs a billing worker on a generated month, then 200
// times appends one event to a MaLo stream through kafkastore and asks the
// worker's API for the balance groups with wait_stream and wait_sequence
// set to that event: every answer must show it (the balance group's
// energy equals the running sum this test keeps), never a stale model.
// The latency from the append to the answer is logged, not asserted.
func TestReadYourWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a worker against Kafka and Redis")
	}
	kafka, redisEnv := serversFromEnvironment(t)
	topic := kafka.TopicName(t, "mabis")
	ns := redisEnv.Prefix(t)
	const tenant, malos, seed = "netz-ryw", 20, 11
	month, _ := mabis.ParseMonth("2026-03")
	setWorkerEnv(t, kafka, redisEnv, topic, ns, map[string]string{
		"PROJECTOR_PARTITIONS": "3", "PROJECTOR_TENANT": tenant, "PROJECTOR_MONTH": month.String(),
		"PROJECTOR_MALOS": fmt.Sprint(malos), "PROJECTOR_SEED": fmt.Sprint(seed),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"generate"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("billing generate: %v", err)
	}

	var out syncBuffer
	workerCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(workerCtx, []string{"worker"}, &out, io.Discard) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("billing worker: %v", err)
		}
	})
	base := ""
	for addr := regexp.MustCompile(`http://[0-9.]+:[0-9]+`); base == ""; time.Sleep(20 * time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatalf("the worker did not report its address:\n%s", out.String())
		}
		base = addr.FindString(out.String())
	}

	// The generated month first, so that the sums below are exact.
	_, want, err := loadgen.Build(loadgen.Config{Tenant: tenant, Month: month, MaLos: malos, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := openReadModel(options{tenant: tenant, month: month, projection: mabis.ProjectionName, namespace: ns}, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		err := want.Verify(ctx, rm.reader)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not build the generated month: %v", err)
		}
	}

	events, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: kafka.Seeds, Topic: topic, Partitions: 3, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	market := loadgen.DefaultMarket()
	eic, supplier := market.BalanceGroups[5].EIC, market.Suppliers[3].ID // Hansepower
	expected := want.Groups[eic].EnergyWh()
	// Four MaLos of the tenant that the generator does not make: a first
	// delivery of days 1 to 28, then corrections of the same days, so
	// that every event changes the group's energy.
	type key struct{ malo, day int }
	daySums := map[key]int64{}
	maloIDs := make([]string, 4)
	streams := make([]string, 4)
	versions := make([]uint64, 4)
	for i := range maloIDs {
		first10 := fmt.Sprintf("6%09d", 4711+i)
		c, err := mabis.MaLoCheckDigit(first10)
		if err != nil {
			t.Fatal(err)
		}
		maloIDs[i] = first10 + string(c)
		if streams[i], err = mabis.StreamID(tenant, maloIDs[i], month); err != nil {
			t.Fatal(err)
		}
	}

	const rounds = 200
	var latencies, requests []time.Duration
	readModels := map[string]int{}
	client := &http.Client{Timeout: 40 * time.Second}
	for round := range rounds {
		m, day := round%4, round/4%28+1
		d, _ := mabis.ParseDay(fmt.Sprintf("%s-%02d", month, day))
		wh := make([]int64, d.Slots())
		var sum int64
		for q := range wh {
			wh[q] = int64(round+1)*10 + int64(q%7)
			sum += wh[q]
		}
		values := mabis.DayValues{MaLo: maloIDs[m], Day: d.String(), Supplier: supplier, BalanceGroup: eic, Wh: wh,
			Quality: strings.Repeat(string(rune(mabis.Measured)), len(wh))}
		var p mabis.Payload = mabis.DayValuesReceived{DayValues: values}
		k := key{m, day}
		if _, ok := daySums[k]; ok {
			p = mabis.ValuesCorrected{DayValues: values, Reason: "read-your-writes test"}
		}
		if err := p.Validate(month); err != nil {
			t.Fatal(err)
		}
		data, err := mabis.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		appended, err := events.Append(ctx, streams[m], framework.ExactVersion(versions[m]), []framework.EventData{data})
		if err != nil {
			t.Fatalf("round %d: append: %v", round, err)
		}
		written := time.Now()
		versions[m] = appended[0].Sequence
		expected += sum - daySums[k]
		daySums[k] = sum

		q := url.Values{"wait_stream": {streams[m]}, "wait_sequence": {fmt.Sprint(versions[m])}, "wait_timeout": {"30s"}}
		sent := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/months/"+month.String()+"/balance-groups?"+q.Encode(), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered := time.Now()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d (%s@%d): status %d, %v: %s", round, streams[m], versions[m], resp.StatusCode, err, body)
		}
		latencies, requests = append(latencies, answered.Sub(written)), append(requests, answered.Sub(sent))
		var totals mabis.MonthTotals
		if err := json.Unmarshal(body, &totals); err != nil {
			t.Fatalf("round %d: %v: %s", round, err, body)
		}
		if header := resp.Header.Get(api.ReadModelHeader); header != totals.ReadModel || header == "" {
			t.Fatalf("round %d: header %s %q, body read_model %q", round, api.ReadModelHeader, header, totals.ReadModel)
		}
		readModels[totals.ReadModel]++
		var got int64 = -1
		for _, g := range totals.BalanceGroups {
			if g.EIC == eic {
				got = g.EnergyWh
			}
		}
		if got != expected {
			t.Fatalf("round %d (%s@%d, %s): %s has %d Wh, want %d: a stale read", round, streams[m], versions[m], p.EventType(), eic, got, expected)
		}
	}
	t.Logf("%d rounds, every read showed its write; read models served: %v", rounds, readModels)
	t.Logf("append to answer:   %s", percentiles(latencies))
	t.Logf("request to answer:  %s", percentiles(requests))
}

// percentiles formats the distribution of ds.
func percentiles(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration {
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(100 * time.Microsecond)
	}
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return fmt.Sprintf("min %v, p50 %v, p90 %v, p99 %v, max %v, mean %v", s[0].Round(100*time.Microsecond), at(0.5), at(0.9), at(0.99),
		s[len(s)-1].Round(100*time.Microsecond), (total / time.Duration(len(s))).Round(100*time.Microsecond))
}
