package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/worker"
)

// exitAnomalies: catalog rebuild found streams off the murmur2 partition
// of their key, or with broken sequences.
const exitAnomalies = 5

func newCatalogCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Maintain the event store's stream catalog"}
	var catalogTopic string
	var createCatalog bool
	rebuild := &cobra.Command{
		Use:     "rebuild",
		Example: "  projectorctl catalog rebuild --topic mabis.process-events   # after other producers wrote streams",
		Short:   "Rebuild the stream catalog from the event topic; report streams off their murmur2 partition",
		Long: `Scans every partition of the event topic (--topic), writes a catalog entry for
every stream found and reports what is wrong, one anomaly per line:

  split     records of the stream on several partitions (a round-robin or random partitioner)
  off-home  the stream wholly on a partition other than its key's murmur2 partition
            (another hash, such as Sarama's default FNV-1a)
  gap, duplicate  the first broken sequence of a stream on one partition

Run it after a producer other than Projector's wrote streams (the catalog only
knows what Projector's Append wrote), or after the catalog topic was lost. The
event store then lists those streams, reads off-home ones where they are, and
refuses to append to misplaced ones. Exits 5 when there are anomalies.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := o.openEventStore(ctx, catalogTopic, createCatalog)
			if err != nil {
				return err
			}
			defer store.Close()
			rep, err := store.RebuildCatalog(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				if err := o.printJSON(rebuildJSON(store.Config(), rep)); err != nil {
					return err
				}
			} else {
				printRebuild(o, store.Config(), rep)
			}
			if rep.AnomalyCount > 0 {
				return &exitError{code: exitAnomalies, err: fmt.Errorf("%d anomalies in %s (%d streams off their murmur2 partition)",
					rep.AnomalyCount, store.Config().Topic, rep.Misplaced)}
			}
			return nil
		},
	}
	rebuild.Flags().StringVar(&catalogTopic, "catalog-topic", "", "catalog topic; default: the event topic + \".catalog\"")
	rebuild.Flags().BoolVar(&createCatalog, "create-catalog", false, "create the catalog topic if it is missing (the event topic is never created)")
	cmd.AddCommand(rebuild)
	return cmd
}

// openEventStore opens the event store on --topic. Topics are never
// created, except a missing catalog topic when createCatalog is set (with
// the event topic's partition count).
func (o *options) openEventStore(ctx context.Context, catalogTopic string, createCatalog bool) (*kafkastore.Store, error) {
	if o.brokers == "" {
		return nil, usage("no Kafka: set --brokers or PROJECTOR_KAFKA_BROKERS")
	}
	sec, err := worker.KafkaSecurity(o.cfg).Opts()
	if err != nil {
		return nil, usage("%v", err)
	}
	opts := append([]kgo.Opt{kgo.RequestTimeoutOverhead(o.timeout)}, sec...)
	cfg := kafkastore.Config{
		Seeds: strings.Split(o.brokers, ","), Topic: o.topic, CatalogTopic: catalogTopic,
		ClientOpts: opts, DontCreateTopics: !createCatalog, RequestTimeout: o.timeout,
		Logger: slog.New(slog.DiscardHandler), // the anomalies are printed
	}
	if createCatalog {
		n, err := o.topicPartitions(ctx, cfg.Seeds, opts)
		if err != nil {
			return nil, err
		}
		cfg.Partitions = n
	}
	return kafkastore.New(ctx, cfg)
}

// topicPartitions returns the partition count of the event topic, which
// must exist.
func (o *options) topicPartitions(ctx context.Context, seeds []string, opts []kgo.Opt) (int32, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		return 0, usage("%v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, o.topic)
	if err != nil {
		return 0, fmt.Errorf("kafka %s: describe %s: %w", o.brokers, o.topic, err)
	}
	d, ok := details[o.topic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return 0, &exitError{code: exitNotFound, err: fmt.Errorf("event topic %s not found (%v)", o.topic, d.Err)}
	}
	return int32(len(d.Partitions)), nil
}

func printRebuild(o *options, cfg kafkastore.Config, rep kafkastore.RebuildReport) {
	fmt.Fprintf(o.stdout, "catalog %s rebuilt from %s: %d streams, %d records\n", cfg.CatalogTopic, cfg.Topic, rep.Streams, rep.Records)
	if rep.MalformedCount > 0 {
		fmt.Fprintf(o.stdout, "malformed records (not in the catalog): %d\n", rep.MalformedCount)
		for _, m := range rep.Malformed {
			fmt.Fprintln(o.stdout, m.Error())
		}
		if more := rep.MalformedCount - len(rep.Malformed); more > 0 {
			fmt.Fprintf(o.stdout, "... and %d more\n", more)
		}
	}
	fmt.Fprintf(o.stdout, "streams off their murmur2 partition: %d\n", rep.Misplaced)
	fmt.Fprintf(o.stdout, "anomalies: %d\n", rep.AnomalyCount)
	for _, a := range rep.Anomalies {
		fmt.Fprintln(o.stdout, a.String()) // quotes the stream ID
	}
	if more := rep.AnomalyCount - len(rep.Anomalies); more > 0 {
		fmt.Fprintf(o.stdout, "... and %d more\n", more)
	}
}

// rebuildReport is the JSON form of a rebuild.
type rebuildReport struct {
	Topic          string               `json:"topic"`
	CatalogTopic   string               `json:"catalog_topic"`
	Streams        int                  `json:"streams"`
	Records        int64                `json:"records"`
	MalformedCount int                  `json:"malformed_count"`
	Malformed      []string             `json:"malformed,omitempty"`
	Misplaced      int                  `json:"misplaced"`
	AnomalyCount   int                  `json:"anomaly_count"`
	Anomalies      []kafkastore.Anomaly `json:"anomalies"`
}

func rebuildJSON(cfg kafkastore.Config, rep kafkastore.RebuildReport) rebuildReport {
	out := rebuildReport{
		Topic: cfg.Topic, CatalogTopic: cfg.CatalogTopic, Streams: rep.Streams, Records: rep.Records,
		MalformedCount: rep.MalformedCount, Misplaced: rep.Misplaced, AnomalyCount: rep.AnomalyCount, Anomalies: rep.Anomalies,
	}
	if out.Anomalies == nil {
		out.Anomalies = []kafkastore.Anomaly{}
	}
	for _, m := range rep.Malformed {
		out.Malformed = append(out.Malformed, m.Error())
	}
	return out
}
