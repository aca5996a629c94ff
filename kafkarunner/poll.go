package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// poll hands each partition's records to its worker until ctx is done. It
// never blocks on a worker (see partition), and between two polls it reads
// partitions again from where their restarted workers ask.
func (r *Runner) poll(ctx context.Context) error {
	for {
		r.waitForRoom(ctx)
		pollCtx := r.pollContext(ctx)
		fetches := r.client.PollRecords(pollCtx, r.cfg.BatchSize)
		r.endPoll()
		if err := r.instanceFenced(); err != nil {
			r.client.AllowRebalance()
			return err
		}
		if fetches.IsClientClosed() || ctx.Err() != nil {
			r.client.AllowRebalance()
			return nil
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			r.setLastError(fmt.Errorf("fetch %s/%d: %w", topic, p, err))
			r.cfg.Logger.WarnContext(ctx, "fetch error", "topic", topic, "partition", p, "err", err)
			if isFatalFetch(err) {
				fatal = fmt.Errorf("kafkarunner: runner %s: fetch %s/%d: %w", r.cfg.Group, topic, p, err)
			}
		})
		if fatal != nil {
			r.client.AllowRebalance()
			return fatal
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			if p := r.partitionOf(fp.Partition); p != nil {
				p.deliver(fetched{records: fp.Records, highWatermark: fp.HighWatermark})
				r.metrics.consumed.Add(ctx, fp.Partition, len(fp.Records))
			}
			// Not ours any more: the new owner reads them.
		})
		r.serveRepositions()
		r.client.AllowRebalance()
	}
}

// pollContext returns the context of the next poll: wake cancels it.
func (r *Runner) pollContext(ctx context.Context) context.Context {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	pollCtx, cancel := context.WithCancel(ctx)
	r.wakeCancel = cancel
	if r.wakePending {
		cancel()
	}
	return pollCtx
}

func (r *Runner) endPoll() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.wakeCancel != nil {
		r.wakeCancel()
		r.wakeCancel = nil
	}
	r.wakePending = false
}

// wake makes the poll loop come round now, even with no records to poll.
func (r *Runner) wake() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	r.wakePending = true
	if r.wakeCancel != nil {
		r.wakeCancel()
	}
	select {
	case r.wakeCh <- struct{}{}:
	default:
	}
}

// waitForRoom holds the poll loop back while the inboxes of the partitions
// that are not paused hold two batches per partition: workers that are all
// busy pace the polls, as a blocking hand-off would, but a stuck partition
// (no batch taken for stuckAfter) is paused, its inbox no longer counts,
// and it never holds the others back. It waits after the loop allowed
// rebalances, and returns on a wake.
func (r *Runner) waitForRoom(ctx context.Context) {
	for {
		r.partsMu.Lock()
		parts := slices.Collect(maps.Values(r.parts))
		r.partsMu.Unlock()
		queued := 0
		for _, p := range parts {
			queued += p.queued()
		}
		if queued < r.inboxLimit() {
			return
		}
		for _, p := range parts {
			p.pauseIfStuck()
		}
		t := time.NewTimer(100 * time.Millisecond) // a pause changes the sum without a signal
		select {
		case <-ctx.Done():
		case <-r.wakeCh:
		case <-r.roomCh:
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// signalRoom tells a waiting poll loop that an inbox shrank.
func (r *Runner) signalRoom() {
	select {
	case r.roomCh <- struct{}{}:
	default:
	}
}

// reposition has the poll loop read partition p again from offset (its
// start when offset is negative), dropping what its inbox holds. It
// returns when done, or with errStopping when p stops first.
func (r *Runner) reposition(p *partition, offset int64) error {
	req := repositionRequest{p: p, offset: offset, done: make(chan struct{})}
	r.repositionMu.Lock()
	r.repositions = append(r.repositions, req)
	r.repositionMu.Unlock()
	r.wake()
	select {
	case <-req.done:
		return nil
	case <-p.quit:
		return errStopping
	}
}

// serveRepositions sets the offsets partitions asked for. Called by the
// poll loop between polls, before it allows a rebalance.
func (r *Runner) serveRepositions() {
	r.repositionMu.Lock()
	reqs := r.repositions
	r.repositions = nil
	r.repositionMu.Unlock()
	if len(reqs) == 0 {
		return
	}
	set := map[int32]kgo.EpochOffset{}
	for _, req := range reqs {
		if r.partitionOf(req.p.id) == req.p {
			// A negative offset is skipped by SetOffsets; 0 is read as
			// the start (an offset below the log start is reset to it).
			set[req.p.id] = kgo.EpochOffset{Epoch: -1, Offset: max(req.offset, 0)}
			req.p.clearInbox()
		}
	}
	if len(set) > 0 && r.client != nil {
		r.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.cfg.Topic: set})
	}
	for _, req := range reqs {
		close(req.done)
	}
}

// isFatalFetch reports fetch errors that retrying cannot fix.
func isFatalFetch(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed)
}
