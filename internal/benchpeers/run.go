package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/benchdata"
	"github.com/projector-dev/projector/kafkastore"
)

type versions struct {
	broker, franz, sarama, kafkaStreams, java, goVersion string
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	v := &versions{goVersion: runtime.Version(), franz: modVersion("github.com/twmb/franz-go"), sarama: modVersion("github.com/IBM/sarama")}
	base := fmt.Sprintf("benchpeers-%d", time.Now().UnixNano())
	topic := base
	logf("creating topic %s (%d partitions) and writing %d records of %d B over %d streams", topic, cfg.partitions, cfg.records, cfg.size, cfg.streams)
	store, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cfg.seeds, Topic: topic, Partitions: int32(cfg.partitions), SingleWriter: true})
	if err != nil {
		return err
	}
	defer store.Close()
	adm, err := kgo.NewClient(kgo.SeedBrokers(cfg.seeds...))
	if err != nil {
		return err
	}
	defer adm.Close()
	admin := kadm.NewClient(adm)
	if !cfg.keepTopic {
		defer func() {
			_, _ = admin.DeleteTopics(context.Background(), topic, store.Config().CatalogTopic)
		}()
	}
	if vs, err := admin.ApiVersions(ctx); err == nil && len(vs.Sorted()) > 0 {
		v.broker = vs.Sorted()[0].VersionGuess()
	}
	start := time.Now()
	if err := produce(ctx, cfg, topic); err != nil {
		return err
	}
	logf("wrote the topic in %v", time.Since(start).Round(time.Millisecond))

	var red redis.UniversalClient
	if cfg.has(stackRunner) {
		red = redis.NewClient(&redis.Options{Addr: cfg.redisAddr})
		defer func() { _ = red.Close() }()
		if err := red.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis %s: %w", cfg.redisAddr, err)
		}
	}

	results := map[string][]result{}
	for round := range cfg.rounds {
		// Rotated each round, so that no stack always runs first or after the same one.
		order := slices.Clone(cfg.stacks)
		k := round % len(order)
		order = append(order[k:], order[:k]...)
		for _, stack := range order {
			group := fmt.Sprintf("%s-%s-%d", base, stack, round)
			var res result
			var err error
			switch stack {
			case stackRaw:
				res, err = runRaw(ctx, cfg, topic, group)
			case stackSarama:
				res, err = runSarama(ctx, cfg, topic, group)
			case stackRunner:
				res, err = runProjector(ctx, cfg, store, red, group)
				benchdata.UnlinkPrefix(ctx, red, group)
			case stackStreamsA:
				res, err = runStreams(ctx, cfg, topic, group, "at_least_once", v)
			case stackStreamsE:
				res, err = runStreams(ctx, cfg, topic, group, "exactly_once_v2", v)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, stack, err)
			}
			if err := check(cfg, stack, res); err != nil {
				return fmt.Errorf("round %d: %w", round+1, err)
			}
			logf("round %d %-12s %9.0f rec/s  %6.2f µs CPU/rec  first record after %v  counted %d over %d streams",
				round+1, stack, res.recPerSec(cfg.records), res.cpuMicrosPerRec(cfg.records), res.firstAfter.Round(time.Millisecond), res.counted, res.keys)
			results[stack] = append(results[stack], res)
		}
	}
	_, err = io.WriteString(out, table(cfg, results, v, time.Now()))
	return err
}

// check fails unless the stack counted every record of every stream: exactly
// the records, or at least them for Kafka Streams at least once.
func check(cfg config, stack string, r result) error {
	n := int64(cfg.records)
	if r.keys != cfg.streams {
		return fmt.Errorf("%s counted %d streams, want %d", stack, r.keys, cfg.streams)
	}
	if stack == stackStreamsA {
		if r.counted < n {
			return fmt.Errorf("%s counted %d records, want at least %d", stack, r.counted, n)
		}
		return nil
	}
	if r.counted != n {
		return fmt.Errorf("%s counted %d records, want exactly %d", stack, r.counted, n)
	}
	return nil
}

// produce writes cfg.records records of cfg.size bytes over cfg.streams
// streams, as kafkarunner's BenchmarkAtomicProjection does
// (benchdata.ProduceCounted).
func produce(ctx context.Context, cfg config, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.seeds...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	return benchdata.ProduceCounted(ctx, cl, cfg.records, cfg.streams, cfg.size)
}

var stackTitles = map[string]string{
	stackRaw:      "raw franz-go poll loop",
	stackSarama:   "Sarama consumer group",
	stackRunner:   "Projector runner (in-memory projection, Redis cursors)",
	stackStreamsA: "Kafka Streams count by key, at_least_once",
	stackStreamsE: "Kafka Streams count by key, exactly_once_v2",
}

// table renders the medians over the rounds as markdown.
func table(cfg config, results map[string][]result, v *versions, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s records × %d B, %d partitions, %s streams, %d rounds (medians), %s\n\n",
		thousands(cfg.records), cfg.size, cfg.partitions, thousands(cfg.streams), cfg.rounds, now.UTC().Format("2006-01-02"))
	b.WriteString("| stack | rec/s | ratio vs raw (min – max) | client CPU µs/rec | first record after (s) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	raw := results[stackRaw]
	for _, stack := range cfg.stacks {
		rs := results[stack]
		var rates, cpus, firsts, ratios []float64
		for i, r := range rs {
			rates = append(rates, r.recPerSec(cfg.records))
			cpus = append(cpus, r.cpuMicrosPerRec(cfg.records))
			firsts = append(firsts, r.firstAfter.Seconds())
			if i < len(raw) {
				ratios = append(ratios, raw[i].elapsed.Seconds()/r.elapsed.Seconds())
			}
		}
		ratio := "–"
		if len(ratios) > 0 {
			ratio = fmt.Sprintf("%s (%s – %s)", ratioString(median(ratios)), ratioString(slices.Min(ratios)), ratioString(slices.Max(ratios)))
		}
		title := stackTitles[stack]
		if cfg.ksWarmup && (stack == stackStreamsA || stack == stackStreamsE) {
			title += " (JVM warmed up)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.1f |\n", title, thousands(int(median(rates))), ratio, median(cpus), median(firsts))
	}
	fmt.Fprintf(&b, "\nKafka broker %s, franz-go %s, Sarama %s, Kafka Streams %s, %s, Java %s; GOMAXPROCS %d, %d CPUs.\n",
		orUnknown(v.broker), orUnknown(v.franz), orUnknown(v.sarama), orUnknown(v.kafkaStreams), v.goVersion, orUnknown(v.java),
		runtime.GOMAXPROCS(0), runtime.NumCPU())
	return b.String()
}

// ratioString keeps two significant digits below 0.1 (Kafka Streams on a
// small topic), two decimals above.
func ratioString(r float64) string {
	if r < 0.1 {
		return strconv.FormatFloat(r, 'g', 2, 64)
	}
	return fmt.Sprintf("%.2f", r)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func modVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return ""
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05 ")+format+"\n", args...)
}
