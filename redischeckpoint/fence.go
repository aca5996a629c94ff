package redischeckpoint

import (
	"context"
	"fmt"
	"strconv"

	"github.com/projector-dev/projector/framework"
)

// AcquireFence hands out a new fencing token for (projection, partition),
// newer than every token handed out before for that pair, in the current
// epoch. From then on writes carrying an older token for the partition fail
// with [ErrFenced]. Carry the fence in the context of every write:
//
//	fence, err := store.AcquireFence(ctx, "billing", partition)
//	ctx = framework.WithFence(ctx, fence)
func (s *Store) AcquireFence(ctx context.Context, projection string, partition int32) (framework.Fence, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return framework.Fence{}, err
	}
	res, err := acquireScript.Run(ctx, s.client, k.list(), "", "", "", strconv.FormatInt(int64(partition), 10)).StringSlice()
	if err != nil {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: %w", projection, partition, err)
	}
	if len(res) != 2 {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	epoch, err1 := strconv.ParseUint(res[0], 10, 64)
	token, err2 := strconv.ParseUint(res[1], 10, 64)
	if err1 != nil || err2 != nil {
		return framework.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	return framework.Fence{Projection: projection, Partition: partition, Epoch: epoch, Token: token}, nil
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
// script it raises the epoch and drops the cursors. From then on, cursors
// and fences of the older epoch no longer count: writes carrying an older
// fence fail with [ErrFenced]. It returns the new epoch. The read model
// itself is dropped by the projection's [framework.Resetter].
func (s *Store) BumpEpoch(ctx context.Context, projection string) (uint64, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, err
	}
	epoch, err := bumpScript.Run(ctx, s.client, k.list(), "", "", "").Text()
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
