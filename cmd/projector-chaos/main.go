// Command projector-chaos runs the fault suite of internal/chaos against the
// Kafka and Redis servers given by PROJECTOR_KAFKA_SEEDS and
// PROJECTOR_REDIS_ADDR (or --brokers and --redis):
//
//	go run ./cmd/projector-chaos --seed 1 --duration 5m
//
// It exits 1 when the checker finds a violation or the group's lag does not
// reach 0. "projector-chaos worker" is the counting worker the suite starts
// as processes; it is not meant to be run by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/chaos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(worker(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "cleanup" {
		os.Exit(cleanupCmd(os.Args[2:]))
	}
	os.Exit(suite(os.Args[1:]))
}

func worker(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "Kafka brokers, comma-separated")
	var cfg chaos.WorkerConfig
	fs.StringVar(&cfg.Topic, "topic", "", "event topic")
	fs.StringVar(&cfg.Group, "group", "", "consumer group")
	fs.StringVar(&cfg.RedisAddr, "redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "Redis address")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis key namespace")
	fs.StringVar(&cfg.Projection, "projection", "chaos-counter", "projection name")
	fs.StringVar(&cfg.ReplicaID, "replica-id", "", "replica ID")
	fs.StringVar(&cfg.KafkaProxy, "kafka-proxy", "", "send every Kafka connection to this address (the suite's proxy)")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 6*time.Second, "consumer group session timeout")
	_ = fs.Parse(args)
	cfg.Brokers = splitList(*brokers)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := chaos.RunWorker(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func suite(args []string) int {
	fs := flag.NewFlagSet("projector-chaos", flag.ExitOnError)
	var cfg chaos.Config
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the fault schedule")
	fs.DurationVar(&cfg.Duration, "duration", time.Minute, "how long events are appended and faults injected")
	fs.IntVar(&cfg.Replicas, "replicas", 3, "worker processes at the start (the nemesis keeps 1..replicas+1)")
	fs.IntVar(&cfg.Streams, "streams", 200, "event streams")
	fs.IntVar(&cfg.Rate, "rate", 400, "events per second, about")
	fs.DurationVar(&cfg.Session, "session-timeout", 6*time.Second, "the workers' group session timeout")
	fs.DurationVar(&cfg.RecoverWithin, "recover-within", 2*time.Minute, "bound on the wait for lag 0 after the last fault")
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "Kafka brokers, comma-separated (PROJECTOR_KAFKA_SEEDS)")
	fs.StringVar(&cfg.RedisAddr, "redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "Redis address (PROJECTOR_REDIS_ADDR)")
	reportJSON := fs.String("report-json", "", "also write the report as JSON to this file")
	keep := fs.Bool("keep", false, "keep the topics, Redis keys and worker logs")
	schedule := fs.Bool("schedule", false, "print the fault schedule of --seed and --duration and exit")
	_ = fs.Parse(args)
	cfg.Brokers = splitList(*brokers)
	if *schedule {
		for _, f := range chaos.Schedule(cfg.Seed, cfg.Duration, cfg.Session) {
			fmt.Println(f)
		}
		return 0
	}
	if len(cfg.Brokers) == 0 || cfg.RedisAddr == "" {
		fmt.Fprintln(os.Stderr, "projector-chaos: give --brokers and --redis (or PROJECTOR_KAFKA_SEEDS and PROJECTOR_REDIS_ADDR)")
		return 2
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "projector-chaos:", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "projector-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "projector-chaos:", err)
		return 2
	}
	run := fmt.Sprintf("chaos-%d-%d", cfg.Seed, time.Now().Unix())
	cfg.Topic, cfg.Namespace, cfg.WorkerBinary, cfg.WorkDir, cfg.Log = "projector-"+run, run, bin, dir, os.Stderr
	fmt.Fprintf(os.Stderr, "worker logs in %s\n", dir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rep, err := chaos.Run(ctx, cfg)
	if rep != nil {
		rep.WriteText(os.Stdout)
		if *reportJSON != "" {
			if err := rep.WriteJSONFile(*reportJSON); err != nil {
				fmt.Fprintln(os.Stderr, "projector-chaos:", err)
			}
		}
	}
	if !*keep {
		cleanup(cfg)
		if rep != nil && !rep.Failed() {
			_ = os.RemoveAll(dir)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "projector-chaos:", err)
		return 1
	}
	if rep.Failed() {
		return 1
	}
	return 0
}

// cleanupCmd deletes what a run with --keep left: "projector-chaos cleanup
// --topic projector-chaos-1-... --namespace chaos-1-...".
func cleanupCmd(args []string) int {
	fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
	var cfg chaos.Config
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "Kafka brokers, comma-separated")
	fs.StringVar(&cfg.RedisAddr, "redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "Redis address")
	fs.StringVar(&cfg.Topic, "topic", "", "topic prefix of the run")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis namespace of the run")
	_ = fs.Parse(args)
	cfg.Brokers = splitList(*brokers)
	if cfg.Topic == "" || cfg.Namespace == "" || len(cfg.Brokers) == 0 || cfg.RedisAddr == "" {
		fmt.Fprintln(os.Stderr, "projector-chaos cleanup: give --topic and --namespace (and brokers, redis)")
		return 2
	}
	cleanup(cfg)
	return 0
}

// cleanup deletes the run's topics and Redis keys.
func cleanup(cfg chaos.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...)); err == nil {
		adm := kadm.NewClient(cl)
		if topics, err := adm.ListTopics(ctx); err == nil {
			var del []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, cfg.Topic) {
					del = append(del, name)
				}
			}
			if len(del) > 0 {
				_, _ = adm.DeleteTopics(ctx, del...)
			}
		}
		if _, err := adm.DeleteGroups(ctx, chaos.GroupName(cfg.Topic)); err != nil {
			fmt.Fprintln(os.Stderr, "projector-chaos: cleanup: delete group:", err)
		}
		cl.Close()
	}
	rc := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	defer rc.Close()
	iter := rc.Scan(ctx, 0, "*"+cfg.Namespace+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			_ = rc.Del(ctx, keys...).Err()
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		_ = rc.Del(ctx, keys...).Err()
	}
	if err := iter.Err(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "projector-chaos: cleanup:", err)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
