package redischeckpoint

import (
	"context"
	"fmt"
	"strconv"

	"github.com/projector-dev/projector/framework"
)

// Progress returns the next offset of partition that the projection's
// stored state covers in the current epoch (ok is false when none is
// recorded). The Kafka runner raises it before it commits an offset, so a
// committed offset above it means Redis lost state the offset relies on.
func (s *Store) Progress(ctx context.Context, projection string, partition int32) (next int64, ok bool, err error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, false, err
	}
	v, err := s.client.HGet(ctx, k.progress, strconv.FormatInt(int64(partition), 10)).Result()
	if isNil(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("redischeckpoint: progress of %s partition %d: %w", projection, partition, err)
	}
	next, err = strconv.ParseInt(v, 10, 64)
	if err != nil || next < 0 {
		return 0, false, fmt.Errorf("redischeckpoint: key %s field %d: progress %q is not a non-negative integer", k.progress, partition, v)
	}
	return next, true, nil
}

// AdvancePartition is a partition worker's checkpoint: in one script it
// raises the cursors of the heads (never lowering one), records each head
// where it is the stream's cursor, and raises the partition's progress to
// next (the offset after the last record the stored state covers). Made
// with a fence in ctx, it is fenced and checks the write serial like every
// fenced write.
func (s *Store) AdvancePartition(ctx context.Context, projection string, partition int32, heads []framework.StreamHead, next int64) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if f, ok := framework.FenceFrom(ctx); ok && f.Partition != partition {
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
	if _, ok := framework.FenceFrom(ctx); !ok {
		// The progress field is per partition: unfenced, the guard has no
		// partition, so the script would write the field "".
		return fmt.Errorf("redischeckpoint: AdvancePartition of %s partition %d needs a context with the partition's fence", projection, partition)
	}
	_, err = s.run(ctx, k, checkpointScript, args, ids)
	return err
}
