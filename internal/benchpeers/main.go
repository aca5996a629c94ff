// Command benchpeers measures Projector's runner against its peers on one
// topic: a raw franz-go poll loop (the baseline), a Sarama consumer group,
// and Kafka Streams (at least once and exactly_once_v2, a Java process built
// from internal/benchpeers/streams). scripts/bench-peers.sh builds the Java
// app, starts the servers if needed and runs it; by hand:
//
//	eval "$(scripts/infra.sh env)"
//	(cd internal/benchpeers/streams && mvn -q -B package -Dbenchpeers.buildDir=/tmp/benchpeers)
//	go run ./internal/benchpeers -streams-jar /tmp/benchpeers/benchpeers-streams.jar -records 100000
//
// It writes the topic once (records in Projector's header contract, keyed by
// stream ID, each stream's sequences contiguous), then runs every stack once
// per round, in an order rotated each round, each in a new consumer group,
// until it has counted every record. Every stack counts records per stream:
// raw and Sarama skip a sequence they have seen (dedupe) and count, the
// runner applies a projection that counts in memory (the runner dedupes by
// its cursors, kept in Redis), Kafka Streams counts by key into an in-memory
// store. The driver fails unless the counts add up to the records (at least
// the records for Kafka Streams at least once) over every stream.
//
// Rates and CPU run from a stack's first record to its last, so neither the
// group join nor the JVM's start is in them. CPU is the client process's
// (getrusage for the Go stacks, which run in this process; the JVM's process
// CPU for Kafka Streams, cold unless -streams-warmup). It prints a markdown table of medians over the
// rounds, the ratio to raw being the median of the per-round ratios.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	cfg, err := parseArgs(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(1)
	}
}

// The stacks, in the order of the table.
const (
	stackRaw      = "raw"
	stackSarama   = "sarama"
	stackRunner   = "projector"
	stackStreamsA = "streams-alos"
	stackStreamsE = "streams-eos"
)

var allStacks = []string{stackRaw, stackSarama, stackRunner, stackStreamsA, stackStreamsE}

type config struct {
	seeds      []string
	redisAddr  string
	records    int
	streams    int
	partitions int
	size       int
	rounds     int
	stacks     []string
	streamsJar string
	java       string
	ksThreads  int
	ksWarmup   bool
	timeout    time.Duration
	keepTopic  bool
}

func (c config) has(stack string) bool { return slices.Contains(c.stacks, stack) }

func (c config) needsJava() bool { return c.has(stackStreamsA) || c.has(stackStreamsE) }

// parseArgs reads the flags; seeds and the Redis address default to
// PROJECTOR_KAFKA_SEEDS and PROJECTOR_REDIS_ADDR (from getenv).
func parseArgs(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("benchpeers", flag.ContinueOnError)
	fs.SetOutput(usage)
	seeds := fs.String("seeds", getenv("PROJECTOR_KAFKA_SEEDS"), "Kafka seed brokers, comma separated (default $PROJECTOR_KAFKA_SEEDS)")
	fs.StringVar(&c.redisAddr, "redis", getenv("PROJECTOR_REDIS_ADDR"), "Redis address for the runner's cursors (default $PROJECTOR_REDIS_ADDR)")
	fs.IntVar(&c.records, "records", 1_000_000, "records in the topic")
	fs.IntVar(&c.streams, "streams", 10_000, "streams (keys) the records are spread over, round robin")
	fs.IntVar(&c.partitions, "partitions", 12, "partitions of the topic")
	fs.IntVar(&c.size, "size", 200, "bytes of each record's value")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every stack once")
	stacks := fs.String("stacks", strings.Join(allStacks, ","), "stacks to run, comma separated, of "+strings.Join(allStacks, ","))
	fs.StringVar(&c.streamsJar, "streams-jar", "", "the Kafka Streams app's jar (needed for the streams-* stacks)")
	fs.StringVar(&c.java, "java", "java", "the java command")
	fs.IntVar(&c.ksThreads, "streams-threads", 1, "num.stream.threads of Kafka Streams")
	fs.BoolVar(&c.ksWarmup, "streams-warmup", false, "let the Kafka Streams app count the topic once, unmeasured, in the same JVM before its measured run (JIT warm)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "longest one stack may take to count the topic")
	fs.BoolVar(&c.keepTopic, "keep-topic", false, "do not delete the topic at the end")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*seeds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.seeds = append(c.seeds, s)
		}
	}
	if len(c.seeds) == 0 {
		return c, errors.New("no Kafka seeds: set -seeds or PROJECTOR_KAFKA_SEEDS")
	}
	for name, v := range map[string]int{"records": c.records, "streams": c.streams, "partitions": c.partitions, "size": c.size, "rounds": c.rounds, "streams-threads": c.ksThreads} {
		if v <= 0 {
			return c, fmt.Errorf("-%s %d: want a positive number", name, v)
		}
	}
	if c.streams > c.records {
		return c, fmt.Errorf("-streams %d is more than -records %d", c.streams, c.records)
	}
	for s := range strings.SplitSeq(*stacks, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allStacks, s) {
			return c, fmt.Errorf("-stacks: unknown stack %q (want some of %s)", s, strings.Join(allStacks, ","))
		}
		if !slices.Contains(c.stacks, s) {
			c.stacks = append(c.stacks, s)
		}
	}
	if len(c.stacks) == 0 {
		return c, errors.New("-stacks: no stack")
	}
	// The table's order, whatever the flag's.
	slices.SortFunc(c.stacks, func(a, b string) int { return slices.Index(allStacks, a) - slices.Index(allStacks, b) })
	if c.has(stackRunner) && c.redisAddr == "" {
		return c, errors.New("the projector stack needs Redis: set -redis or PROJECTOR_REDIS_ADDR")
	}
	if c.needsJava() && c.streamsJar == "" {
		return c, errors.New("the streams-* stacks need -streams-jar (built by scripts/bench-peers.sh)")
	}
	if c.timeout <= 0 {
		return c, fmt.Errorf("-timeout %v: want a positive duration", c.timeout)
	}
	return c, nil
}
