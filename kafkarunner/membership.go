package kafkarunner

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Membership in the consumer group: joining, the rebalance callbacks that
// start and stop partition workers, and leaving.

// consume is one membership in the group: it joins, polls until ctx is
// done, and then stops gracefully: every worker finishes its batch, stores
// its cursors and commits, and the client leaves the group.
func (r *Runner) consume(ctx context.Context) error {
	// The client's own context: cancelled when another member took this
	// replica's instance ID, so that franz-go does not rejoin (and fence
	// that member in turn) after its backoff.
	r.shutdownBy.Store(0)
	clientCtx, cancelClient := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelClient()
	fencedHook := &instanceFencedHook{r: r, cancel: cancelClient}
	opts := append([]kgo.Opt{
		kgo.WithHooks(fencedHook),
		kgo.SessionTimeout(r.cfg.SessionTimeout),
		kgo.HeartbeatInterval(r.cfg.HeartbeatInterval),
		kgo.SeedBrokers(r.cfg.Seeds...),
		// The member shows as the replica (kafka-consumer-groups, kadm,
		// projectorctl status), not as "kgo"; ClientOpts may override it.
		kgo.ClientID(clientID(r.cfg.ReplicaID)),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(r.cfg.FetchMaxBytes),
		// Transaction markers occupy offsets: workers pass over them, so
		// that commits and the lag reach the end of a partition whose
		// last record is a marker.
		kgo.KeepControlRecords(),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
		kgo.MetadataMinAge(time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()), // for the dead-letter topic
	}, r.cfg.ClientOpts...)
	opts = append(opts, kgo.WithContext(clientCtx)) // last: shutdown and the fenced hook cancel it
	if r.maxRecordBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(r.maxRecordBytes))
	}
	// kotel's client metrics (connections, bytes, batches) whenever meters
	// are recorded; with tracing, its receive span per record too,
	// continuing the producer's trace from the record headers (apply spans
	// are its children).
	var kopts []kotel.Opt
	if r.tracing {
		kopts = append(kopts, kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(r.cfg.TracerProvider),
			kotel.TracerPropagator(r.propagator), kotel.ConsumerGroup(r.cfg.Group))))
	}
	if _, noop := r.cfg.MeterProvider.(metricnoop.MeterProvider); !noop {
		kopts = append(kopts, kotel.WithMeter(kotel.NewMeter(kotel.MeterProvider(r.cfg.MeterProvider))))
	}
	if len(kopts) > 0 {
		opts = append(opts, kgo.WithHooks(kotel.NewKotel(kopts...).Hooks()...))
	}
	if r.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	if r.cfg.ServerSideBalancer {
		opts = append(opts, kgo.ServerSideBalancer())
	} else {
		opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkarunner: runner %s: client: %w", r.cfg.Group, err)
	}
	r.client = cl

	runErr := r.poll(ctx)
	r.shutdown(ctx, cl, cancelClient)
	r.joined.Store(false)
	return runErr
}

func (r *Runner) partitionIDs() []int32 {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	return slices.Sorted(maps.Keys(r.parts))
}

func (r *Runner) partitionOf(id int32) *partition {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	return r.parts[id]
}

// onAssigned starts a worker for every newly assigned partition. It does
// not wait for the workers to take their fences: that happens in their own
// goroutines, with retries, while their records wait in the inbox.
func (r *Runner) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	r.joined.Store(true)
	for _, id := range assigned[r.cfg.Topic] {
		r.partsMu.Lock()
		if _, ok := r.parts[id]; ok {
			r.partsMu.Unlock()
			continue
		}
		p := r.newPartition(id)
		if prev, ok := r.stopping[id]; ok {
			p.previous = prev.done
		}
		r.parts[id] = p
		r.partsMu.Unlock()
		r.wg.Go(p.run)
		r.cfg.Logger.InfoContext(ctx, "partition assigned", "group", r.cfg.Group, "partition", id)
	}
	r.metrics.rebalances.Add(ctx, 1)
}

func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	defer cancel()
	r.stopPartitions(ctx, revoked[r.cfg.Topic], true)
	r.metrics.rebalances.Add(ctx, 1)
}

func (r *Runner) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout) // lost partitions stop at once; this bounds a hung one
	defer cancel()
	r.stopPartitions(ctx, lost[r.cfg.Topic], false)
	r.metrics.rebalances.Add(ctx, 1)
}

// stopPartitions stops the partitions' workers and waits for them: with
// commit, each finishes its batch, stores its cursors and commits; without
// (the partitions were lost), each stops at once and writes nothing more.
// Past ctx's deadline their writes are cancelled.
//
// A worker another call is already stopping (the shutdown and a revoke of
// the group loop run side by side) is waited for too: a revoke that
// returned before it finished its batch would let the group hand the
// partition to a new owner that reads from the last commit while this
// worker still applies.
func (r *Runner) stopPartitions(ctx context.Context, ids []int32, commit bool) {
	cl := r.client // of the membership the partitions belong to
	var stopping []*partition
	r.partsMu.Lock()
	for _, id := range ids {
		if p, ok := r.parts[id]; ok {
			delete(r.parts, id)
			p.stop(commit)
			r.stopping[id] = p
			stopping = append(stopping, p)
		} else if p, ok := r.stopping[id]; ok && !p.abandoned.Load() {
			if !commit {
				p.abort() // lost while another path stops it: write nothing more
			}
			stopping = append(stopping, p)
		}
	}
	r.partsMu.Unlock()
	for _, p := range stopping {
		select {
		case <-p.done:
		case <-ctx.Done():
			r.cfg.Logger.Warn("partition did not stop in time; cancelling its writes", "partition", p.id)
			p.abort()
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				// A projection that ignores its context: leave its
				// goroutine behind rather than the rebalance; readiness
				// says so until it returns.
				// Later stops do not wait for it again; only a new
				// worker of the partition does (afterPrevious).
				if p.abandoned.CompareAndSwap(false, true) {
					r.cfg.Logger.Error("partition worker ignores cancellation; leaving it behind", "partition", p.id)
					r.leftBehind.Add(1)
					go func() {
						<-p.done
						r.leftBehind.Add(-1)
						r.forgetStopped(p)
						r.cfg.Logger.Info("a partition worker left behind returned", "partition", p.id)
					}()
				}
				continue
			}
		}
		r.forgetStopped(p)
		if cl != nil {
			// A paused partition stays paused in the client: unpause it,
			// in case the group gives it back.
			cl.ResumeFetchPartitions(map[string][]int32{r.cfg.Topic: {p.id}})
		}
	}
}

// forgetStopped removes a worker that is done from the stopping set.
func (r *Runner) forgetStopped(p *partition) {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	if r.stopping[p.id] == p {
		delete(r.stopping, p.id)
	}
}

// clientID is the replica ID as a Kafka client ID: characters outside
// [A-Za-z0-9._-] become '-', at most 255 bytes.
func clientID(replica string) string {
	b := []byte(replica)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 255 {
		b = b[:255]
	}
	if len(b) == 0 {
		return "projector"
	}
	return string(b)
}
