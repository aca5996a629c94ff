package kafkarunner

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/kafkastore"
)

// ensureDeadLetterTopic creates the dead-letter topic when it is missing,
// with the same partitions as the event topic and room for a copy of the
// largest record the event topic accepts (plus the dead-letter headers),
// and sizes the producer for it.
func (r *Runner) ensureDeadLetterTopic(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafkarunner: runner %s: client: %w", r.cfg.Group, err)
	}
	defer cl.Close()
	admin := newAdmin(cl)
	sourceMax := int32(0)
	if rc, err := admin.DescribeTopicConfigs(ctx, r.cfg.Topic); err == nil {
		if c, err := rc.On(r.cfg.Topic, nil); err == nil {
			for _, kv := range c.Configs {
				if kv.Key == "max.message.bytes" && kv.Value != nil {
					if n, err := strconv.ParseInt(*kv.Value, 10, 32); err == nil {
						sourceMax = int32(n)
					}
				}
			}
		}
	}
	if sourceMax > 0 {
		// Room for the dead-letter headers (the error text is capped).
		r.maxRecordBytes = max(sourceMax+dlqHeadroom, 1_000_012)
	}
	details, err := admin.ListTopics(ctx, r.cfg.DeadLetterTopic)
	if err != nil {
		return fmt.Errorf("kafkarunner: runner %s: dead-letter topic: %w", r.cfg.Group, err)
	}
	src, err := admin.ListTopics(ctx, r.cfg.Topic)
	if err != nil {
		return fmt.Errorf("kafkarunner: runner %s: topic %s: %w", r.cfg.Group, r.cfg.Topic, err)
	}
	if d, ok := src[r.cfg.Topic]; ok && d.Err == nil && !r.topicKnown.Load() { // once: a retry of this step must not write it again
		r.partitions = int32(len(d.Partitions))
		r.topicKnown.Store(true)
	}
	if r.partitions == 0 {
		r.cfg.Logger.Warn("the event topic's partition count is unknown: records off their stream's home partition are not detected", "topic", r.cfg.Topic)
	}
	if _, ok := details[r.cfg.DeadLetterTopic]; ok && details[r.cfg.DeadLetterTopic].Err == nil {
		return nil
	}
	parts := max(r.partitions, 1)
	configs := map[string]*string{"retention.ms": kadm.StringPtr("-1")}
	if sourceMax > 0 {
		configs["max.message.bytes"] = kadm.StringPtr(strconv.FormatInt(int64(sourceMax)+dlqHeadroom, 10))
	}
	return kafkastore.EnsureTopic(ctx, cl, r.cfg.DeadLetterTopic, parts, configs, r.cfg.Logger)
}

// dlqHeadroom is what a dead-letter copy may add to a record: the
// projector.dlq.* headers, the error text capped at maxDLQErrorBytes.
const dlqHeadroom = 64 << 10
