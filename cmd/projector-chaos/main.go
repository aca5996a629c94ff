// Command projector-chaos runs the fault suite of internal/chaos against the
// Kafka and Redis servers given by PROJECTOR_KAFKA_SEEDS and
// PROJECTOR_REDIS_ADDR (or --brokers and --redis):
//
//	go run ./cmd/projector-chaos --seed 1 --duration 5m
//
// It exits 1 when the checker finds a violation or the group's lag does not
// reach 0. "projector-chaos worker" is the counting worker and
// "projector-chaos writer" the appending writer the suite starts as
// processes; they are not meant to be run by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/internal/chaos"
)

// quietRedis drops go-redis's own log lines (a dial that failed while the
// nemesis restarts Redis, a Sentinel switch): the suite reports faults and
// their outcome itself, and the workers' logs keep their own errors.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quietRedis{})
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(worker(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "writer" {
		os.Exit(writer(os.Args[2:]))
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
	fs.StringVar(&cfg.Group, "group", "", "consumer group of version 0")
	rds := fs.String("redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "Redis address; the Sentinels with --redis-master; the Cluster's masters with --redis-cluster")
	fs.StringVar(&cfg.Redis.MasterName, "redis-master", "", "Sentinel master name")
	fs.BoolVar(&cfg.Redis.Cluster, "redis-cluster", false, "Redis Cluster")
	fs.IntVar(&cfg.WaitReplicas, "wait-replicas", 0, "checkpoints wait for this many Redis replicas")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis key namespace")
	fs.StringVar(&cfg.Projection, "projection", chaos.Projection, "projection name")
	fs.StringVar(&cfg.ReplicaID, "replica-id", "", "replica ID")
	dial := fs.String("dial", "", "from=to,…: connect to these proxies instead of the servers (the suite's network faults)")
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "write the HTTP address (/healthz, /readyz) to this file")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 6*time.Second, "consumer group session timeout")
	_ = fs.Parse(args)
	cfg.Brokers = splitList(*brokers)
	cfg.Redis.Addrs = splitList(*rds)
	var err error
	if cfg.Dial, err = chaos.ParseDialMap(*dial); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := chaos.RunWorker(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// writer appends events with a guarded kafkastore.Store and prints each
// try and outcome on stdout (see chaos.RunWriter).
func writer(args []string) int {
	fs := flag.NewFlagSet("writer", flag.ExitOnError)
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "Kafka brokers, comma-separated")
	var cfg chaos.WriterConfig
	fs.StringVar(&cfg.Topic, "topic", "", "event topic")
	partitions := fs.Int("partitions", 0, "the topic's partition count (0: the store's default)")
	rds := fs.String("redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "Redis address; the Sentinels with --redis-master; the Cluster's masters with --redis-cluster")
	fs.StringVar(&cfg.Redis.MasterName, "redis-master", "", "Sentinel master name")
	fs.BoolVar(&cfg.Redis.Cluster, "redis-cluster", false, "Redis Cluster")
	fs.IntVar(&cfg.WaitReplicas, "wait-replicas", 0, "the append registry waits for this many Redis replicas")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis key namespace of the append registry")
	fs.StringVar(&cfg.ID, "id", "", "writer ID (event IDs are <id>-<n>)")
	fs.IntVar(&cfg.Slot, "slot", 0, "this writer's slot among --writers: its round robin over the streams starts at slot*streams/writers")
	fs.IntVar(&cfg.Writers, "writers", 1, "writer processes of the run")
	fs.IntVar(&cfg.Streams, "streams", 200, "event streams")
	fs.Float64Var(&cfg.Rate, "rate", 100, "this writer's appends per second, about")
	fs.DurationVar(&cfg.AppendLease, "append-lease", chaos.DefaultWriterLease, "kafkastore.Config.AppendLease")
	fs.IntVar(&cfg.Concurrency, "concurrency", chaos.DefaultWriterConcurrency, "appends in flight at most")
	dial := fs.String("dial", "", "from=to,…: connect to these proxies instead of the servers (the suite's network faults)")
	_ = fs.Parse(args)
	cfg.Brokers = splitList(*brokers)
	cfg.Redis.Addrs = splitList(*rds)
	cfg.Partitions = int32(*partitions)
	cfg.Out = os.Stdout
	var err error
	if cfg.Dial, err = chaos.ParseDialMap(*dial); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := chaos.RunWriter(ctx, cfg); err != nil {
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
	topology := fs.String("topology", chaos.TopologySingle, "servers: single (PROJECTOR_KAFKA_SEEDS, PROJECTOR_REDIS_ADDR), kafka3+sentinel or kafka3+cluster (scripts/ha.sh's PROJECTOR_HA_*)")
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "single topology: Kafka brokers, comma-separated (PROJECTOR_KAFKA_SEEDS)")
	redisAddr := fs.String("redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "single topology: Redis address (PROJECTOR_REDIS_ADDR)")
	fs.StringVar(&cfg.CtlBinary, "projectorctl", "", "projectorctl binary for the rebuild and replay faults (default: built with go build when go is on PATH; \"none\": no admin faults)")
	fs.StringVar(&cfg.Workload, "workload", chaos.WorkloadCounter, "counter (raw events, the counting worker) or billing (a generated MABIS month, billing worker processes; single topology)")
	fs.StringVar(&cfg.BillingBinary, "billing", "", "examples/billing binary for --workload billing (default: built with go build)")
	kinds := fs.String("kinds", "", "fault kinds to draw from, comma-separated (default: all the topology allows)")
	fs.IntVar(&cfg.WaitReplicas, "wait-replicas", 0, "checkpoints wait for this many Redis replicas (0: 1 with Sentinels, else none; -1: none)")
	fs.IntVar(&cfg.Writers, "writers", 2, "counter workload: writer processes appending with guarded kafkastore.Stores (0: one in-process raw producer); the billing workload ignores the default")
	fs.DurationVar(&cfg.AppendLease, "append-lease", chaos.DefaultWriterLease, "the writers' kafkastore.Config.AppendLease")
	reportJSON := fs.String("report-json", "", "also write the report as JSON to this file")
	keep := fs.Bool("keep", false, "keep the topics, Redis keys and worker logs")
	schedule := fs.Bool("schedule", false, "print the fault schedule of --seed and --duration and exit")
	_ = fs.Parse(args)
	cfg.Kinds = splitList(*kinds)
	if cfg.Workload == chaos.WorkloadBilling {
		writersSet := false
		fs.Visit(func(f *flag.Flag) { writersSet = writersSet || f.Name == "writers" })
		if !writersSet {
			cfg.Writers = 0 // the billing workload appends itself
		}
	}
	switch *topology {
	case chaos.TopologySingle:
		cfg.Topology = chaos.SingleTopology(splitList(*brokers), *redisAddr)
		if len(cfg.Topology.Brokers) == 0 || *redisAddr == "" {
			fmt.Fprintln(os.Stderr, "projector-chaos: give --brokers and --redis (or PROJECTOR_KAFKA_SEEDS and PROJECTOR_REDIS_ADDR)")
			return 2
		}
	default:
		t, ok, err := chaos.HATopologyFromEnv(*topology)
		if !ok {
			err = errors.New("PROJECTOR_HA_KAFKA_SEEDS is not set: start the servers with scripts/ha.sh up and eval its export lines")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "projector-chaos:", err)
			return 2
		}
		cfg.Topology = t
	}
	if *schedule {
		if cfg.CtlBinary == "" {
			cfg.CtlBinary = "projectorctl" // as a run builds it
		} else if cfg.CtlBinary == "none" {
			cfg.CtlBinary = ""
		}
		for _, f := range cfg.PlannedSchedule() {
			fmt.Println(f)
		}
		return 0
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
	switch cfg.CtlBinary {
	case "none":
		cfg.CtlBinary = ""
	case "":
		ctl := filepath.Join(dir, "projectorctl")
		if out, err := exec.Command("go", "build", "-o", ctl, "github.com/projector-dev/projector/cmd/projectorctl").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "projector-chaos: go build projectorctl (give --projectorctl PATH or none): %v\n%s", err, out)
			return 2
		}
		cfg.CtlBinary = ctl
	}
	if cfg.Workload == chaos.WorkloadBilling && cfg.BillingBinary == "" {
		b := filepath.Join(dir, "billing")
		if out, err := exec.Command("go", "build", "-o", b, "github.com/projector-dev/projector/examples/billing").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "projector-chaos: go build examples/billing (give --billing PATH): %v\n%s", err, out)
			return 2
		}
		cfg.BillingBinary = b
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
	switch {
	case *keep:
	case rep != nil && !rep.Failed() && err == nil:
		cleanup(cfg)
		_ = os.RemoveAll(dir)
	default:
		// A failed run keeps its evidence: the topic, the Redis keys of
		// every version and the worker logs.
		fmt.Fprintf(os.Stderr, "kept for inspection: topic %s, Redis namespace %s, worker logs in %s; remove with: projector-chaos cleanup --topology %s --topic %s --namespace %s\n",
			cfg.Topic, cfg.Namespace, dir, cfg.Topology.Name, cfg.Topic, cfg.Namespace)
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
	topology := fs.String("topology", chaos.TopologySingle, "single, kafka3+sentinel or kafka3+cluster")
	brokers := fs.String("brokers", os.Getenv("PROJECTOR_KAFKA_SEEDS"), "single topology: Kafka brokers, comma-separated")
	redisAddr := fs.String("redis", os.Getenv("PROJECTOR_REDIS_ADDR"), "single topology: Redis address")
	topic := fs.String("topic", "", "topic prefix of the run")
	namespace := fs.String("namespace", "", "Redis namespace of the run")
	_ = fs.Parse(args)
	t := chaos.SingleTopology(splitList(*brokers), *redisAddr)
	if *topology != chaos.TopologySingle {
		var ok bool
		var err error
		if t, ok, err = chaos.HATopologyFromEnv(*topology); !ok || err != nil {
			fmt.Fprintln(os.Stderr, "projector-chaos cleanup: PROJECTOR_HA_* not set or wrong:", err)
			return 2
		}
	}
	if *topic == "" || *namespace == "" || len(t.Brokers) == 0 || len(t.Redis.Addrs) == 0 || t.Redis.Addrs[0] == "" {
		fmt.Fprintln(os.Stderr, "projector-chaos cleanup: give --topic and --namespace (and brokers, redis)")
		return 2
	}
	cleanup(chaos.Config{Topology: t, Topic: *topic, Namespace: *namespace})
	return 0
}

func cleanup(cfg chaos.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := chaos.Cleanup(ctx, cfg.Topology, cfg.Topic, cfg.Namespace); err != nil {
		fmt.Fprintln(os.Stderr, "projector-chaos: cleanup:", err)
	}
}

func splitList(s string) []string { return chaos.SplitList(s) }
