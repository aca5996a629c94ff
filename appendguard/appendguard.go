// Package appendguard makes expected versions hold across writer
// processes on an event log without compare-and-set, such as a Kafka
// topic.
//
// A [Registry] holds, per stream, the head (last sequence and the offset
// of its record) and at most one reservation: the right of one writer to
// write the next sequences, for a lease. An append is
//
//  1. Reserve: the registry checks the expected version against the head
//     and that no other reservation is live, and reserves the sequences;
//  2. write the events in a transaction of the writer's own producer,
//     whose transactional ID the reservation names, without committing;
//  3. Record the offsets the records got (refused once the lease ended);
//  4. commit the transaction, then Commit the reservation (the head
//     moves).
//
// A reservation whose lease ended before it was committed or released is
// repaired by the next writer of the stream: it fences the reservation's
// producer (Kafka aborts its open transaction, and the writer can no
// longer commit it), reads the recorded offsets to see whether the records
// were committed before the fence, and Resolves the reservation as written
// or not. A writer killed, frozen or cut off at any step therefore leaves
// either its events, committed in full and counted in the head, or
// nothing; never two events with one sequence, a gap, or a stream nobody
// can append to.
//
// The registry must not lose writes: a reservation or head it forgets can
// let a second writer take a sequence already written. Run it on a store
// that persists every write before answering (Redis with appendfsync
// always, and WAIT for a replica where failover is possible).
package appendguard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/projector-dev/projector/framework"
)

// Head is the end of a stream as the registry knows it.
type Head struct {
	// Sequence is the stream's last sequence, 0 for a stream without
	// events.
	Sequence uint64
	// Offset is the offset of the record holding Sequence in the stream's
	// partition, -1 when the stream has no events or it is unknown.
	Offset int64
}

// Reservation is one writer's right to write sequences First through
// First+N-1 of a stream, until its lease ends.
type Reservation struct {
	StreamID string
	// Token identifies the reservation; it is unique.
	Token string
	// Writer is the transactional ID of the producer that writes the
	// records. A repair fences it.
	Writer string
	// Head is the head the reservation was taken on; First is
	// Head.Sequence+1.
	Head  Head
	First uint64
	N     int
	// Partition, FirstOffset and LastOffset say where the records were
	// written (the first and the last record), once [Registry.Record]
	// stored them; -1 before.
	Partition               int32
	FirstOffset, LastOffset int64
	// Expires is when the lease ends, by the registry's clock.
	Expires time.Time
}

// Last returns the last sequence the reservation covers.
func (r Reservation) Last() uint64 { return r.First + uint64(r.N) - 1 }

// Registry serialises the appends of every writer process per stream.
// Implementations: [Memory] here, redischeckpoint.AppendRegistry on Redis.
// Every implementation passes the conformance suite in package
// appendguard/guardtest. All methods are safe for concurrent use, from any
// number of processes sharing the registry.
type Registry interface {
	// Reserve reserves the next n (≥ 1) sequences of streamID for writer,
	// for lease, when the registered head meets expected and the stream
	// has no live reservation. It fails with [ErrUnknownStream] for a
	// stream the registry does not know ([Registry.Seed] it first), a
	// [*framework.VersionConflictError] carrying the registered head, a
	// [*BusyError] while another reservation is live, and an
	// [*ExpiredError] carrying a reservation whose lease ended unresolved
	// (repair it first). The expected version is checked before the
	// stream's reservation: a conflict is reported even while another
	// writer holds one.
	Reserve(ctx context.Context, streamID string, expected framework.ExpectedVersion, n int, writer string, lease time.Duration) (Reservation, error)

	// Seed registers head as the stream's head unless the registry knows
	// the stream already, and returns the head registered afterwards.
	Seed(ctx context.Context, streamID string, head Head) (Head, error)

	// Record stores the partition and the offsets of r's first and last
	// record. The writer
	// calls it before committing them, and must not commit when it fails:
	// [ErrLeaseLost] when r is not the stream's live reservation any more
	// (its lease ended, or a repair resolved it).
	Record(ctx context.Context, r Reservation, partition int32, first, last int64) error

	// Commit ends r after its records were committed: the head moves to
	// r's last sequence at lastOffset. It succeeds too when a repair
	// already resolved r as written, and fails with
	// [ErrResolvedUnwritten] when a repair resolved it as not written
	// (which a fenced producer cannot have committed after).
	Commit(ctx context.Context, r Reservation, lastOffset int64) error

	// Resolve ends r with what a repair found: written (the head moves to
	// r's last sequence at lastOffset) or not (the head stays). A writer
	// releases a reservation it did not commit with written false. It
	// does nothing when r is not the stream's pending reservation any
	// more.
	Resolve(ctx context.Context, r Reservation, written bool, lastOffset int64) error

	// Get returns the stream's registered head and pending reservation
	// (nil when none), and whether the registry knows the stream.
	Get(ctx context.Context, streamID string) (Head, *Reservation, bool, error)
}

var (
	// ErrUnknownStream reports a stream the registry does not know.
	ErrUnknownStream = errors.New("appendguard: stream not registered")
	// ErrLeaseLost reports a reservation that is no longer the stream's
	// live reservation: its lease ended or a repair resolved it. Its
	// records must not be committed.
	ErrLeaseLost = errors.New("appendguard: reservation lost")
	// ErrResolvedUnwritten reports a Commit of a reservation a repair
	// resolved as not written.
	ErrResolvedUnwritten = errors.New("appendguard: reservation resolved as not written")
)

// BusyError reports a live reservation of another append.
type BusyError struct {
	StreamID string
	Writer   string
	// Left is how long its lease still runs.
	Left time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("appendguard: stream %s: writer %s holds a reservation for %v more", e.StreamID, e.Writer, e.Left.Round(time.Millisecond))
}

// ExpiredError reports a reservation whose lease ended before it was
// committed or released: it must be repaired before the stream is
// appended to.
type ExpiredError struct {
	Reservation Reservation
}

func (e *ExpiredError) Error() string {
	r := e.Reservation
	return fmt.Sprintf("appendguard: stream %s: the reservation of sequences %d-%d by writer %s expired unresolved", r.StreamID, r.First, r.Last(), r.Writer)
}
