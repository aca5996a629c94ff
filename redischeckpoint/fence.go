package redischeckpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/projector-dev/projector/framework"
)

// AcquireFence hands out a new fencing token for (projection, partition),
// newer than every token handed out before for that pair, in the current
// epoch. From then on writes carrying an older token for the partition fail
// with [ErrFenced]. Carry the fence in the context of every write:
//
//	fence, err := store.AcquireFence(ctx, "billing", partition)
//	ctx = framework.WithFence(ctx, fence)
//
// The Store also starts tracking the partition's write serial for the new
// fence: a later write with it through this Store that finds fewer writes
// than it made fails with [ErrStateLost] (see [StateLostError]). Writes
// carrying one fence must not run concurrently.
func (s *Store) AcquireFence(ctx context.Context, projection string, partition int32) (framework.Fence, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return framework.Fence{}, err
	}
	res, err := acquireScript.Run(ctx, s.client, k.list(), "", "", "", "", strconv.FormatInt(int64(partition), 10)).StringSlice()
	if hasReplyPrefix(err, "CLOSED ") {
		return framework.Fence{}, &VersionClosedError{Projection: projection, Partition: partition}
	}
	if err != nil {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: %w", projection, partition, err)
	}
	if len(res) != 3 {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	epoch, err1 := strconv.ParseUint(res[0], 10, 64)
	token, err2 := strconv.ParseUint(res[1], 10, 64)
	serial, err3 := strconv.ParseUint(res[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	f := framework.Fence{Projection: projection, Partition: partition, Epoch: epoch, Token: token}
	s.startSession(f, serial)
	return f, nil
}

// CheckState checks, without writing, that the fence ctx carries is still
// current and that Redis still holds every write made with it through this
// Store: nil, a [*FencedError] or a [*StateLostError]. A partition worker
// that has nothing to write calls it now and then, so that a loss is
// noticed while the partition is idle.
func (s *Store) CheckState(ctx context.Context, projection string) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if _, ok := framework.FenceFrom(ctx); !ok {
		return fmt.Errorf("redischeckpoint: CheckState of %s needs a context with a fence", projection)
	}
	_, err = s.run(ctx, k, verifyScript, nil, nil)
	return err
}

// CheckFence reports whether f is still current: nil, or a [*FencedError].
func (s *Store) CheckFence(ctx context.Context, f framework.Fence) error {
	k, err := s.keysFor(f.Projection)
	if err != nil {
		return err
	}
	pipe := s.client.Pipeline()
	epochCmd := pipe.HGet(ctx, k.meta, "epoch")
	tokenCmd := pipe.HGet(ctx, k.fences, strconv.FormatInt(int64(f.Partition), 10))
	_, _ = pipe.Exec(ctx)
	epoch, err := uintOrZero(epochCmd.Result())
	if err != nil {
		return fmt.Errorf("redischeckpoint: %s epoch: %w", k.meta, err)
	}
	token, err := uintOrZero(tokenCmd.Result())
	if err != nil {
		return fmt.Errorf("redischeckpoint: %s partition %d: %w", k.fences, f.Partition, err)
	}
	if epoch != f.Epoch || token != f.Token {
		return &FencedError{Projection: f.Projection, Partition: f.Partition, Held: f, CurrentEpoch: epoch, CurrentToken: token}
	}
	return nil
}

// Epoch returns the projection's current epoch (0 before the first replay).
func (s *Store) Epoch(ctx context.Context, projection string) (uint64, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, err
	}
	epoch, err := uintOrZero(s.client.HGet(ctx, k.meta, "epoch").Result())
	if err != nil {
		return 0, fmt.Errorf("redischeckpoint: %s epoch: %w", k.meta, err)
	}
	return epoch, nil
}

// BumpEpoch starts a new epoch of the projection, for a replay: in one
// script it raises the epoch and drops the cursors, heads, partition
// progress and parked streams (each cleared park goes to the audit of
// resolutions as a "replay": the stream is rebuilt from its first event). From then on, cursors and fences of the older epoch no longer
// count: writes carrying an older fence fail with [ErrFenced]. It returns the
// new epoch. The read model itself is dropped by the projection's
// [framework.Resetter]. See [Store.BumpEpochAt] for a replay that reset the
// consumer group's offsets.
func (s *Store) BumpEpoch(ctx context.Context, projection string) (uint64, error) {
	return s.BumpEpochAt(ctx, projection, nil)
}

// BumpEpochAt is [Store.BumpEpoch] for a replay that reset the consumer
// group's committed offsets to start: the new epoch's state covers each
// partition up to start[partition] (the events before it are, by the
// replay's choice, not part of the rebuilt model), so a runner that finds
// those offsets committed does not take them for lost state.
func (s *Store) BumpEpochAt(ctx context.Context, projection string, start map[int32]int64) (uint64, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, err
	}
	// The parks of the old epoch: the rebuild starts every stream from
	// its first event, so they are cleared and recorded.
	parked, err := s.Parked(ctx, projection)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	args := []any{"", "", "", "", strconv.Itoa(resolutionsKept), strconv.Itoa(len(parked))}
	for _, p := range parked {
		p.Resolving = nil
		raw, err := json.Marshal(framework.Resolution{StreamID: p.StreamID, Action: framework.ResolveReplay, By: "replay",
			Reason: "the replay dropped the read model: the stream is rebuilt from its first event", At: now, Done: now, Parked: p})
		if err != nil {
			return 0, fmt.Errorf("redischeckpoint: encode the cleared park of %s: %w", p.StreamID, err)
		}
		args = append(args, string(raw))
	}
	for p, off := range start {
		args = append(args, strconv.FormatInt(int64(p), 10), strconv.FormatInt(off, 10))
	}
	epoch, err := bumpScript.Run(ctx, s.client, k.list(), args...).Text()
	if err != nil {
		return 0, fmt.Errorf("redischeckpoint: bump epoch of %s: %w", projection, err)
	}
	return strconv.ParseUint(epoch, 10, 64)
}

// uintOrZero parses a Redis reply, treating a missing key or field as 0.
func uintOrZero(v string, err error) (uint64, error) {
	if isNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseUint(v, 10, 64)
	if perr != nil {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}
