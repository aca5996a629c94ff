package kafkarunner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/projector-dev/projector/controlplane"
)

var (
	// ErrCommittedStateLost reports a partition whose committed offset
	// relies on state the checkpoint store no longer holds: the partition
	// stops until the projection is replayed. See [StateLostError].
	ErrCommittedStateLost = errors.New("kafkarunner: committed offset relies on lost state")

	// ErrInstanceFenced ends Run when another member of the consumer
	// group took this replica's Config.InstanceID: a new incarnation of
	// the replica (this one was stopped or cut off past its session and
	// is a zombie) or, by mistake, a second replica configured with the
	// same ID. The replica has dropped its partitions without committing
	// or writing anything more and does not rejoin: rejoining would fence
	// the other member in turn.
	ErrInstanceFenced = errors.New("kafkarunner: another group member joined with this replica's instance ID")
)

// StateLostError names what a partition's committed offset relies on that
// the checkpoint store no longer holds. It matches [ErrCommittedStateLost]
// and [controlplane.ErrStateLost].
type StateLostError struct {
	Projection string
	Partition  int32
	Epoch      uint64
	Committed  int64 // the group's committed offset
	Progress   int64 // the store's progress for the partition; -1 when none
}

func (e *StateLostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafkarunner: projection %s partition %d: the consumer group committed offset %d, but the checkpoint store ", e.Projection, e.Partition, e.Committed)
	if e.Progress < 0 {
		fmt.Fprintf(&b, "holds no progress for the partition in epoch %d", e.Epoch)
	} else {
		fmt.Fprintf(&b, "covers the partition only up to offset %d (epoch %d)", e.Progress, e.Epoch)
	}
	b.WriteString(": cursors and read-model writes the committed offset relies on are gone " +
		"(Redis restarted without persistence, failed over to a replica that missed writes, was flushed, or evicted keys); " +
		"the partition stays stopped: replay the projection (projectorctl replay " + e.Projection + ")")
	return b.String()
}

// Is reports whether target is [ErrCommittedStateLost] or
// [controlplane.ErrStateLost].
func (e *StateLostError) Is(target error) bool {
	return target == ErrCommittedStateLost || target == controlplane.ErrStateLost
}
