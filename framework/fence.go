package framework

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

// MaxProjectionNameLength is the longest projection name, in bytes.
const MaxProjectionNameLength = 128

// ValidateProjectionName reports whether name can name a projection: 1 to
// [MaxProjectionNameLength] characters from [A-Za-z0-9._-]. The name becomes
// a Kafka consumer group and part of Redis keys (inside a {hash tag}), so
// nothing else is allowed. A versioned name ([VersionedName], "billing@v3")
// is a valid name followed by "@v" and a version from 1.
func ValidateProjectionName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "empty"
	case len(name) > MaxProjectionNameLength:
		reason = "longer than 128 bytes"
	default:
		if base, v := SplitVersionedName(name); v > 0 {
			name = base // "billing@v3": a version suffix is allowed
			if base == "" {
				reason = "empty before its version"
			}
		}
		for i := 0; i < len(name); i++ {
			if !isNameByte(name[i]) {
				reason = "character " + strconv.QuoteRuneToASCII(rune(name[i])) + " at byte " + strconv.Itoa(i) +
					" (allowed: letters, digits, '.', '_', '-')"
				break
			}
		}
	}
	if reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidProjectionName, name, reason)
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}
