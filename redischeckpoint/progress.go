package redischeckpoint

import (
	"context"
	"fmt"
	"strconv"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Progress returns how far the projection's stored state covers
// partition in the current epoch. The Kafka runner raises it before it
// commits an offset, so a committed offset above it means Redis lost state
// the offset relies on. A partition without progress and without a write
// serial, in a projection with a stored checkpoint, was written by a
// version without progress tracking: Untracked.
func (s *Store) Progress(ctx context.Context, projection string, partition int32) (controlplane.PartitionProgress, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return controlplane.PartitionProgress{}, err
	}
	field := strconv.FormatInt(int64(partition), 10)
	pipe := s.client.Pipeline()
	progress := pipe.HGet(ctx, k.progress, field)
	serial := pipe.HExists(ctx, k.serials, field)
	saved := pipe.HExists(ctx, k.meta, "saved")
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) {
		return controlplane.PartitionProgress{}, fmt.Errorf("redischeckpoint: progress of %s partition %d: %w", projection, partition, err)
	}
	v, err := progress.Result()
	if isNil(err) {
		return controlplane.PartitionProgress{Untracked: !serial.Val() && saved.Val()}, nil
	}
	next, perr := strconv.ParseInt(v, 10, 64)
	if err != nil || perr != nil || next < 0 {
		return controlplane.PartitionProgress{}, fmt.Errorf("redischeckpoint: key %s field %d: progress %q is not a non-negative integer", k.progress, partition, v)
	}
	return controlplane.PartitionProgress{Next: next, Recorded: true}, nil
}

// AdvancePartition is a partition worker's checkpoint: in one script it
// raises the cursors of the heads (never lowering one), records each head
// where it is the stream's cursor, and raises the partition's progress to
// next (the offset after the last record the stored state covers). Made
// with a fence in ctx, it is fenced and checks the write serial like every
// fenced write. With Config.WaitReplicas set it returns only once enough
// replicas acknowledged it, else a [*NotReplicatedError].
func (s *Store) AdvancePartition(ctx context.Context, projection string, partition int32, heads []controlplane.StreamHead, next int64) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if f, ok := controlplane.FenceFrom(ctx); ok && f.Partition != partition {
		return fmt.Errorf("redischeckpoint: a checkpoint of partition %d carries the fence of partition %d", partition, f.Partition)
	}
	ids := make([]string, len(heads))
	args := make([]any, 0, 2+3*len(heads))
	args = append(args, strconv.Itoa(s.cfg.ChunkSize), strconv.FormatInt(next, 10))
	for i, h := range heads {
		if err := framework.ValidateStreamID(h.StreamID); err != nil {
			return err
		}
		ids[i] = h.StreamID
		head := ""
		if h.EventID != "" {
			head = formatHead(h)
		}
		args = append(args, h.StreamID, strconv.FormatUint(h.Sequence, 10), head)
	}
	if _, ok := controlplane.FenceFrom(ctx); !ok {
		// The progress field is per partition: unfenced, the guard has no
		// partition, so the script would write the field "".
		return fmt.Errorf("redischeckpoint: AdvancePartition of %s partition %d needs a context with the partition's fence", projection, partition)
	}
	_, err = s.runReplicated(ctx, k, checkpointScript, args, ids, partitionWrite("the checkpoint", partition))
	return err
}
