package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twmb/franz-go/pkg/kerr"
)

// topicSpec is what a topic must look like.
type topicSpec struct {
	name       string
	partitions int32
	// checkPartitions is set when the partition count was configured
	// explicitly and must match an existing topic.
	checkPartitions bool
	configs         map[string]*string
	compacted       bool // catalog: must be compacted; events: must not be
	finiteOK        bool // events: a finite retention is acceptable
}

func ptr(s string) *string { return &s }

func (s *Store) topicSpecs() []topicSpec {
	return []topicSpec{
		{
			name: s.cfg.Topic, partitions: s.cfg.Partitions, checkPartitions: s.partitionsSet,
			configs:  map[string]*string{"cleanup.policy": ptr("delete"), "retention.ms": ptr("-1"), "retention.bytes": ptr("-1")},
			finiteOK: s.cfg.AllowFiniteRetention,
		},
		{
			name: s.cfg.CatalogTopic, partitions: s.cfg.Partitions,
			configs:   map[string]*string{"cleanup.policy": ptr("compact")},
			compacted: true,
		},
	}
}

// ensureTopics creates missing topics and checks existing ones, returning
// every problem joined.
func (s *Store) ensureTopics(ctx context.Context) error {
	specs := s.topicSpecs()
	names := []string{specs[0].name, specs[1].name}
	details, err := s.admin.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("kafkastore: describe topics %v: %w", names, err)
	}
	var errs []error
	created := false
	for _, spec := range specs {
		d, ok := details[spec.name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, s.createTopic(ctx, spec))
			created = true
			continue
		}
		if d.Err != nil {
			errs = append(errs, topicAccessError(spec, "describe", d.Err))
			continue
		}
		errs = append(errs, s.checkTopic(ctx, spec, int32(len(d.Partitions))))
	}
	if err := errors.Join(errs...); err != nil || !created {
		s.notePartitions(details)
		return err
	}
	return s.waitForLeaders(ctx, names)
}

// notePartitions remembers the event topic's partition count, which says
// where the murmur2 partitioner puts a key.
func (s *Store) notePartitions(details kadm.TopicDetails) {
	if d, ok := details[s.cfg.Topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
		s.partitions.Store(int32(len(d.Partitions)))
	}
}

// waitForLeaders waits until every partition of the topics has a leader, as
// a topic is not usable the moment it is created.
func (s *Store) waitForLeaders(ctx context.Context, topics []string) error {
	for {
		details, err := s.admin.ListTopics(ctx, topics...)
		if err == nil && allLed(details, topics) {
			s.notePartitions(details)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkastore: topics %v have no leader for every partition: %w (last error: %v)", topics, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(details kadm.TopicDetails, topics []string) bool {
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return false
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 || p.Err != nil {
				return false
			}
		}
	}
	return true
}

func (s *Store) createTopic(ctx context.Context, spec topicSpec) error {
	if s.cfg.DontCreateTopics {
		return &TopicError{Topic: spec.name, Reason: "does not exist and Config.DontCreateTopics is set; create it with " + spec.describe(), Err: ErrTopicSettings}
	}
	resp, err := s.admin.CreateTopic(ctx, spec.partitions, s.cfg.ReplicationFactor, spec.configs, spec.name)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		s.cfg.Logger.InfoContext(ctx, "created topic", "topic", spec.name, "partitions", spec.partitions)
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		return nil // created concurrently; the next start checks it
	}
	return topicAccessError(spec, "create", err)
}

func topicAccessError(spec topicSpec, op string, err error) error {
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return &TopicError{Topic: spec.name, Reason: fmt.Sprintf("not authorized to %s it (%v); ask an admin to create it with %s", op, err, spec.describe()),
			Err: fmt.Errorf("%w: %w", ErrNotAuthorized, err)}
	}
	return &TopicError{Topic: spec.name, Reason: fmt.Sprintf("%s: %v", op, err), Err: err}
}

func (spec topicSpec) describe() string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d partitions", spec.partitions))
	for k, v := range spec.configs {
		parts = append(parts, k+"="+*v)
	}
	return strings.Join(parts, ", ")
}

// checkTopic refuses settings that would lose events or move streams.
func (s *Store) checkTopic(ctx context.Context, spec topicSpec, partitions int32) error {
	var problems []string
	if spec.checkPartitions && partitions != spec.partitions {
		problems = append(problems, fmt.Sprintf("has %d partitions, configured %d (a different count moves streams to other partitions)", partitions, spec.partitions))
	}
	configs, err := s.admin.DescribeTopicConfigs(ctx, spec.name)
	if err != nil {
		return topicAccessError(spec, "describe configs of", err)
	}
	rc, err := configs.On(spec.name, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return topicAccessError(spec, "describe configs of", err)
	}
	value := func(key string) string {
		for _, c := range rc.Configs {
			if c.Key == key && c.Value != nil {
				return *c.Value
			}
		}
		return ""
	}
	policy := value("cleanup.policy")
	switch {
	case spec.compacted && policy != "compact":
		problems = append(problems, fmt.Sprintf("cleanup.policy is %q, want \"compact\" (the catalog keeps one record per stream)", policy))
	case !spec.compacted && strings.Contains(policy, "compact"):
		problems = append(problems, fmt.Sprintf("cleanup.policy is %q: compaction would delete events", policy))
	}
	if !spec.compacted && !spec.finiteOK {
		if r := value("retention.ms"); r != "-1" {
			problems = append(problems, fmt.Sprintf("retention.ms is %s: expired events cannot be replayed (set it to -1, or Config.AllowFiniteRetention)", r))
		}
		if r := value("retention.bytes"); r != "" && r != "-1" {
			problems = append(problems, fmt.Sprintf("retention.bytes is %s: deleted events cannot be replayed (set it to -1, or Config.AllowFiniteRetention)", r))
		}
	}
	if len(problems) > 0 {
		return &TopicError{Topic: spec.name, Reason: strings.Join(problems, "; "), Err: ErrTopicSettings}
	}
	return nil
}

// EnsureTopic creates topic name with partitions and configs (replication:
// the broker's default) on the cluster of cl unless it exists, and waits
// until every partition has a leader. The Kafka runner creates its
// dead-letter topic with it.
func EnsureTopic(ctx context.Context, cl *kgo.Client, name string, partitions int32, configs map[string]*string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: Config{Topic: name, ReplicationFactor: -1, Logger: logger}}
	s.admin = kadm.NewClient(cl)
	if err := s.createTopic(ctx, topicSpec{name: name, partitions: partitions, configs: configs}); err != nil {
		return err
	}
	return s.waitForLeaders(ctx, []string{name})
}
