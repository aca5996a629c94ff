package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

var withServers = env(map[string]string{"PROJECTOR_KAFKA_SEEDS": "127.0.0.1:1, 127.0.0.1:2", "PROJECTOR_REDIS_ADDR": "127.0.0.1:3"})

func TestParseArgsDefaults(t *testing.T) {
	c, err := parseArgs([]string{"-streams-jar", "x.jar"}, withServers, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.records != 1_000_000 || c.streams != 10_000 || c.partitions != 12 || c.size != 200 || c.rounds != 3 || c.ksThreads != 1 {
		t.Errorf("defaults: %+v", c)
	}
	if !slices.Equal(c.seeds, []string{"127.0.0.1:1", "127.0.0.1:2"}) || c.redisAddr != "127.0.0.1:3" {
		t.Errorf("servers: %q %q", c.seeds, c.redisAddr)
	}
	if !slices.Equal(c.stacks, allStacks) {
		t.Errorf("stacks %q, want %q", c.stacks, allStacks)
	}
}

func TestParseArgsStacks(t *testing.T) {
	c, err := parseArgs([]string{"-stacks", "projector, raw,raw", "-records", "100000", "-rounds", "1"}, withServers, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.stacks, []string{"raw", "projector"}) || c.needsJava() || c.records != 100_000 || c.rounds != 1 {
		t.Errorf("got %+v", c)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  func(string) string
		want string
	}{
		{[]string{"-streams-jar", "x"}, env(nil), "no Kafka seeds"},
		{[]string{"-stacks", "raw,flink"}, withServers, `unknown stack "flink"`},
		{[]string{"-stacks", ","}, withServers, "no stack"},
		{[]string{}, withServers, "need -streams-jar"},
		{[]string{"-stacks", "projector"}, env(map[string]string{"PROJECTOR_KAFKA_SEEDS": "k:1"}), "needs Redis"},
		{[]string{"-stacks", "raw", "-records", "0"}, withServers, "-records 0"},
		{[]string{"-stacks", "raw", "-records", "10", "-streams", "11"}, withServers, "more than -records"},
		{[]string{"-stacks", "raw", "extra"}, withServers, "unexpected arguments"},
		{[]string{"-stacks", "raw", "-timeout", "0s"}, withServers, "-timeout"},
	} {
		_, err := parseArgs(tc.args, tc.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestDedupe(t *testing.T) {
	d := dedupe{}
	for _, seq := range []uint64{1, 2, 2, 1, 3} {
		d.add([]byte("a"), seq)
	}
	d.add([]byte("b"), 1)
	if n, keys := sumCounts(d); n != 4 || keys != 2 {
		t.Errorf("counted %d over %d streams, want 4 over 2", n, keys)
	}
}

func TestCheck(t *testing.T) {
	cfg := config{records: 10, streams: 2}
	ok := result{counted: 10, keys: 2}
	more := result{counted: 11, keys: 2}
	if err := check(cfg, stackRaw, ok); err != nil {
		t.Error(err)
	}
	if err := check(cfg, stackStreamsE, more); err == nil {
		t.Error("exactly once: 11 of 10 records passed")
	}
	if err := check(cfg, stackStreamsA, more); err != nil {
		t.Errorf("at least once: %v", err)
	}
	if err := check(cfg, stackStreamsA, result{counted: 9, keys: 2}); err == nil {
		t.Error("at least once: 9 of 10 records passed")
	}
	if err := check(cfg, stackRunner, result{counted: 10, keys: 1}); err == nil {
		t.Error("1 of 2 streams passed")
	}
}

func TestParseReport(t *testing.T) {
	kv, err := parseReport("noise\nprocessed=5 sum=5 keys=2 elapsed_ns=100 kafka_streams=4.3.1 java=17.0.15\n")
	if err != nil {
		t.Fatal(err)
	}
	if kv["sum"] != "5" || kv["kafka_streams"] != "4.3.1" || kv["java"] != "17.0.15" {
		t.Errorf("got %v", kv)
	}
	if _, err := parseReport("no report\n"); err == nil {
		t.Error("no report: no error")
	}
}

func TestTable(t *testing.T) {
	cfg := config{records: 1000, streams: 10, partitions: 2, size: 200, rounds: 2, stacks: []string{stackRaw, stackRunner}}
	results := map[string][]result{
		stackRaw:    {{elapsed: time.Second, cpu: time.Millisecond}, {elapsed: time.Second, cpu: time.Millisecond}},
		stackRunner: {{elapsed: 2 * time.Second, cpu: 4 * time.Millisecond}, {elapsed: 4 * time.Second, cpu: 4 * time.Millisecond}},
	}
	got := table(cfg, results, &versions{goVersion: "go1"}, time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	for _, want := range []string{
		"1,000 records × 200 B, 2 partitions, 10 streams, 2 rounds (medians), 2026-11-29",
		"| raw franz-go poll loop | 1,000 | 1.00 (1.00 – 1.00) | 1.00 | 0.0 |",
		"| Projector runner (in-memory projection, Redis cursors) | 375 | 0.38 (0.25 – 0.50) | 4.00 | 0.0 |",
		"Kafka Streams ?",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestMedianThousands(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median %v", m)
	}
	for r, want := range map[float64]string{1: "1.00", 0.456: "0.46", 0.0734: "0.073", 0.00512: "0.0051"} {
		if got := ratioString(r); got != want {
			t.Errorf("ratioString(%v) = %q, want %q", r, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
