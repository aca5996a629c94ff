package controlplane

import (
	"context"
	"fmt"
	"strconv"
)

// Fence is a fencing token: the right to write a projection's cursors and
// read model for one partition, in one epoch. A checkpoint store that
// supports fencing hands out increasing tokens per (projection, partition)
// and rejects writes that carry a token older than the newest, so a worker
// that lost its partition (a zombie after a rebalance) cannot write stale
// state. Epoch is the projection's replay generation: a replay raises it, and
// a fence of an older epoch is stale too.
type Fence struct {
	Projection string
	Partition  int32
	Epoch      uint64
	Token      uint64
}

// String formats the fence for logs and errors.
func (f Fence) String() string {
	return fmt.Sprintf("%s/partition %d/epoch %d/token %s", f.Projection, f.Partition, f.Epoch, strconv.FormatUint(f.Token, 10))
}

type fenceKey struct{}

// WithFence returns a context that carries f. Checkpoint stores and
// read-model writers that support fencing check every write made with that
// context against it.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence ctx carries, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}
