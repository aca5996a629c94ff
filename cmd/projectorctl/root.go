package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/worker"
)

// options are the global flags.
type options struct {
	brokers      string
	topic        string
	group        string
	namespace    string
	waitReplicas int
	output       string
	timeout      time.Duration
	by           string

	settings *projectorconfig.Set
	// cfg is the connection settings, read by load.
	cfg projectorconfig.Config

	stdin          io.Reader
	stdout, stderr io.Writer
}

// load reads the connection settings (flags, else PROJECTOR_* variables,
// else defaults), reporting every invalid one at once as a usage error.
func (o *options) load() error {
	c, err := o.settings.Config()
	if err != nil {
		return usage("%v", err)
	}
	o.brokers = strings.Join(c.Brokers, ",")
	o.topic, o.group = c.Topic, c.Group
	o.cfg = c
	o.namespace, o.waitReplicas = c.RedisNamespace, c.RedisWaitReplicas
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func defaultActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "projectorctl",
		Short:         "Administer Projector projections: status, replay, pause/resume, parked streams, the stream catalog",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.output != "text" && o.output != "json" {
				return usage("-o must be text or json, not %q", o.output)
			}
			return o.load()
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage("%v", err) })
	f := root.PersistentFlags()
	// The connection settings come from the table shared with the worker
	// runtime (package projectorconfig): same flag names, same variables,
	// same boolean syntax; a password never shows as a default.
	settings := projectorconfig.NewSet(projectorconfig.Connection()...)
	settings.SetDefault(projectorconfig.Topic, "mabis.process-events")
	for _, fl := range settings.Flags() {
		pf := f.VarPF(fl.Value, fl.Name, "", fl.Usage)
		if fl.Bool {
			pf.NoOptDefVal = "true"
		}
		if fl.AliasOf != "" {
			pf.Hidden = true
		}
	}
	o.settings = settings
	f.StringVarP(&o.output, "output", "o", "text", "output format of read commands: text or json")
	f.DurationVar(&o.timeout, "request-timeout", 30*time.Second, "timeout of each request to Kafka or Redis")
	f.StringVar(&o.by, "by", env("PROJECTORCTL_BY", defaultActor()), "who acts, recorded with pauses, replays and skips (PROJECTORCTL_BY)")

	root.AddCommand(newStatusCommand(o), newReplayCommand(o), newRebuildCommand(o), newPauseCommand(o, true), newPauseCommand(o, false), newParkedCommand(o), newCatalogCommand(o), newVersionCommand(o))
	// Completion of projection names (and of parked streams after one),
	// from Redis, for every command that takes them.
	var complete func(c *cobra.Command)
	complete = func(c *cobra.Command) {
		switch {
		case strings.HasSuffix(c.Use, " PROJECTION STREAM"):
			c.ValidArgsFunction = completeParked(o)
		case strings.HasSuffix(c.Use, " PROJECTION"):
			c.ValidArgsFunction = completeProjection(o)
		}
		for _, sub := range c.Commands() {
			complete(sub)
		}
	}
	complete(root)
	return root
}

// exactArgs wraps cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usage("%s: %v", cmd.CommandPath(), err)
		}
		return nil
	}
}

func isUsageError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.Contains(msg, "arg(s)")
}

// conn holds the connections of one command.
type conn struct {
	o *options
	// name is the version of the projection the command acts on: the live
	// one ("billing", "billing@v3") unless the user named a version;
	// group is its consumer group. baseGroup is version 0's group.
	name  string
	group string
	// ref names the version for package ops whatever is live later
	// (ops.Projection.Ref); name is the version's name.
	ref       string
	baseGroup string
	// version is what the version is: "live", "building" or "retired"
	// (closed, not deleted yet).
	version string
	kafka   *kgo.Client
	redis   redis.UniversalClient
	store   controlplane.Admin
	// ops runs the operations (on Kafka when the command connected it).
	ops    *ops.Client
	closed bool
}

// connect opens Kafka (unless kafkaToo is false) and Redis for projection
// name.
func (o *options) connect(ctx context.Context, name string, kafkaToo bool) (*conn, error) {
	c := &conn{o: o, name: name, group: o.group}
	if c.group == "" {
		c.group = name
	}
	if !o.cfg.HasRedis() {
		return nil, usage("no Redis: set --redis-url or PROJECTOR_REDIS_URL (or --redis-addrs, for Sentinel or Cluster)")
	}
	rc, err := redischeckpoint.NewClient(worker.RedisClientConfig(o.cfg))
	if err != nil {
		return nil, usage("%v", err)
	}
	c.redis = rc
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: rc, Namespace: o.namespace, WaitReplicas: o.waitReplicas})
	if err != nil {
		c.close()
		return nil, usage("%v", err)
	}
	c.store = store
	if err := c.store.Ping(ctx); err != nil {
		c.close()
		return nil, err
	}
	cfg := ops.Config{Admin: store, Checkpoints: store, Topic: o.topic, Group: o.group, RequestTimeout: o.timeout}
	if c.ops, err = ops.New(cfg); err != nil {
		c.close()
		return nil, usage("%v", err)
	}
	// A command about "billing" acts on its live version; "billing@v3"
	// names a version (a rebuild in progress, a kept one).
	p, err := c.ops.Projection(ctx, name)
	if err != nil {
		c.close()
		return nil, err
	}
	c.name, c.ref, c.group, c.baseGroup, c.version = p.Name, p.Ref(), p.Group, p.BaseGroup, p.State
	if !kafkaToo {
		return c, nil
	}
	if o.brokers == "" {
		c.close()
		return nil, usage("no Kafka: set --brokers or PROJECTOR_KAFKA_BROKERS")
	}
	sec, err := worker.KafkaSecurity(o.cfg).Opts()
	if err != nil {
		c.close()
		return nil, usage("%v", err)
	}
	cfg.Seeds = strings.Split(o.brokers, ",")
	cfg.ClientOpts = append([]kgo.Opt{kgo.RequestTimeoutOverhead(o.timeout)}, sec...)
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Seeds...)}, cfg.ClientOpts...)
	c.kafka, err = kgo.NewClient(opts...)
	if err != nil {
		c.close()
		return nil, usage("%v", err)
	}
	cfg.Kafka = kadm.NewClient(c.kafka)
	if c.ops, err = ops.New(cfg); err != nil {
		c.close()
		return nil, usage("%v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := c.kafka.Ping(pctx); err != nil {
		c.close()
		return nil, fmt.Errorf("kafka %s: %w", o.brokers, err)
	}
	return c, nil
}

func (c *conn) close() {
	if c.closed {
		return
	}
	c.closed = true
	if c.kafka != nil {
		c.kafka.Close()
	}
	if c.redis != nil {
		_ = c.redis.Close()
	}
}

// printJSON writes v as indented JSON.
func (o *options) printJSON(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
