// Package memcontrol is an in-memory control-plane backend: [Store]
// implements every interface of package controlplane (cursors, fences,
// progress, heads, parked streams, control, replicas and read-model
// versions) with mutex-protected maps.
//
// It is meant for tests, demos and single-process use: its state lives in
// the process and is lost on exit, and replicas in other processes do not
// see it. Its behaviour follows package redischeckpoint, the production
// backend, and it passes the same conformance suite (package
// controltest). What cannot happen in memory does not: [Store] never
// returns an error matching [controlplane.ErrStateLost] (nothing is lost
// while the process runs, and everything is lost together when it ends),
// and writes are never refused for want of replicas.
package memcontrol

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Store is an in-memory control-plane backend. The zero value is not
// usable: call [NewStore]. It is safe for concurrent use.
type Store struct {
	mu sync.Mutex
	// projections holds the state of each projection by its versioned
	// name ("billing", "billing@v3"), as redischeckpoint keeps the keys of
	// each version apart.
	projections map[string]*projection
	// versions holds the registry of read-model versions by the bare
	// projection name.
	versions map[string]*controlplane.Versions
}

// Every interface the Store implements, checked by the compiler.
var (
	_ framework.ProjectionCheckpointStore = (*Store)(nil)
	_ controlplane.CheckpointStore        = (*Store)(nil)
	_ controlplane.Fencer                 = (*Store)(nil)
	_ controlplane.ProgressStore          = (*Store)(nil)
	_ controlplane.HeadStore              = (*Store)(nil)
	_ controlplane.ServerChecker          = (*Store)(nil)
	_ controlplane.ParkStore              = (*Store)(nil)
	_ controlplane.ControlStore           = (*Store)(nil)
	_ controlplane.Pinger                 = (*Store)(nil)
	_ controlplane.Admin                  = (*Store)(nil)
)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{projections: map[string]*projection{}, versions: map[string]*controlplane.Versions{}}
}

// projection is the state of one (version of a) projection.
type projection struct {
	saved   bool // a checkpoint was written (Names lists it)
	closed  bool // a rebuild replaced or abandoned this version
	epoch   uint64
	fences  map[int32]uint64
	written map[int32]bool // partitions with a fenced write (for Untracked)
	cursors map[string]uint64
	heads   map[string]head
	// progress is, per partition, the next offset the stored state covers.
	progress    map[int32]int64
	parked      map[string]parkRecord
	resolving   map[string]request
	resolutions [][]byte // JSON, newest first
	control     control
	claims      map[uint64]claim // reset claims by epoch
	replicas    map[string][]byte
}

type head struct {
	seq     uint64
	eventID string
	pos     *framework.Position
}

func newProjection() *projection {
	return &projection{
		fences:    map[int32]uint64{},
		written:   map[int32]bool{},
		cursors:   map[string]uint64{},
		heads:     map[string]head{},
		progress:  map[int32]int64{},
		parked:    map[string]parkRecord{},
		resolving: map[string]request{},
		claims:    map[uint64]claim{},
		replicas:  map[string][]byte{},
	}
}

// get returns the state of the projection named name (created empty on
// first use), or the error of an invalid name. s.mu must be held.
func (s *Store) get(name string) (*projection, error) {
	if err := framework.ValidateProjectionName(name); err != nil {
		return nil, err
	}
	p := s.projections[name]
	if p == nil {
		p = newProjection()
		s.projections[name] = p
	}
	return p, nil
}

// lock locks the store and returns the projection's state; the caller
// unlocks s.mu.
func (s *Store) lock(name string) (*projection, error) {
	s.mu.Lock()
	p, err := s.get(name)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// guard checks the fence ctx carries, if any, for a write to projection
// name (state p): nil when the write may go on. It refuses a closed
// version ([controlplane.ErrVersionClosed]), a fence that is not the
// partition's newest in the current epoch ([*FencedError]) and a write
// while a replay's reset is pending ([controlplane.ErrResetPending]), in
// that order, as redischeckpoint does. write records that the partition
// had a fenced write. s.mu must be held.
func (s *Store) guard(ctx context.Context, name string, p *projection, write bool) error {
	f, ok := controlplane.FenceFrom(ctx)
	if !ok {
		return nil
	}
	if f.Projection != name {
		return fmt.Errorf("memcontrol: a write to projection %s carries a fence of projection %s", name, f.Projection)
	}
	if p.closed {
		return &VersionClosedError{Projection: name, Partition: f.Partition}
	}
	if token := p.fences[f.Partition]; f.Epoch != p.epoch || f.Token != token {
		// A fence newer than the store's (never handed out by this
		// Store) is refused as fenced too: memory loses nothing, so it
		// cannot be lost state.
		return &FencedError{Projection: name, Partition: f.Partition, Held: f, CurrentEpoch: p.epoch, CurrentToken: token}
	}
	if c := p.control; c.resetEpoch > c.resetDone {
		return fmt.Errorf("memcontrol: projection %s partition %d: write refused: the reset of the read model for epoch %d is pending: %w",
			name, f.Partition, c.resetEpoch, controlplane.ErrResetPending)
	}
	if write {
		p.written[f.Partition] = true
	}
	return nil
}

// AcquireFence hands out a new fencing token for (projection, partition),
// above every token handed out before for that pair, in the current epoch.
// From then on writes carrying an older token for the partition fail with
// an error matching [controlplane.ErrFenced]. A closed version (see
// [Store.SwitchLive]) hands out none ([controlplane.ErrVersionClosed]).
func (s *Store) AcquireFence(ctx context.Context, projection string, partition int32) (controlplane.Fence, error) {
	p, err := s.lock(projection)
	if err != nil {
		return controlplane.Fence{}, err
	}
	defer s.mu.Unlock()
	if p.closed {
		return controlplane.Fence{}, &VersionClosedError{Projection: projection, Partition: partition}
	}
	p.fences[partition]++
	return controlplane.Fence{Projection: projection, Partition: partition, Epoch: p.epoch, Token: p.fences[partition]}, nil
}

// CheckState reports whether the fence ctx carries is still current: nil,
// or an error matching [controlplane.ErrFenced] (or ErrVersionClosed,
// ErrResetPending). It never reports [controlplane.ErrStateLost].
func (s *Store) CheckState(ctx context.Context, projection string) error {
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := controlplane.FenceFrom(ctx); !ok {
		return fmt.Errorf("memcontrol: CheckState of %s needs a context with a fence", projection)
	}
	return s.guard(ctx, projection, p, false)
}

// CheckFence reports whether f is still current: nil, or a [*FencedError].
func (s *Store) CheckFence(ctx context.Context, f controlplane.Fence) error {
	p, err := s.lock(f.Projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if token := p.fences[f.Partition]; p.epoch != f.Epoch || token != f.Token {
		return &FencedError{Projection: f.Projection, Partition: f.Partition, Held: f, CurrentEpoch: p.epoch, CurrentToken: token}
	}
	return nil
}

// Load implements [framework.ProjectionCheckpointStore].
func (s *Store) Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	p, err := s.lock(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	cp := framework.NewGlobalProjectionCheckpoint()
	for id, seq := range p.cursors {
		cp.Advance(id, seq)
	}
	return cp, nil
}

// Save implements [framework.ProjectionCheckpointStore]: it replaces the
// cursors with cp's (and drops the heads). Fenced when ctx carries a
// fence.
func (s *Store) Save(ctx context.Context, name string, cp *framework.GlobalProjectionCheckpoint) error {
	p, err := s.lock(name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, name, p, true); err != nil {
		return err
	}
	p.cursors, p.heads = map[string]uint64{}, map[string]head{}
	for id, seq := range cp.All() {
		p.cursors[id] = seq
	}
	p.saved = true
	return nil
}

// Advance implements [framework.ProjectionCheckpointStore]: it raises the
// given cursors, never lowering one, atomically. Fenced when ctx carries a
// fence.
func (s *Store) Advance(ctx context.Context, name string, cursors map[string]uint64) error {
	if err := framework.ValidateProjectionName(name); err != nil {
		return err
	}
	if len(cursors) == 0 {
		return nil
	}
	for id := range cursors {
		if err := framework.ValidateStreamID(id); err != nil {
			return err
		}
	}
	p, err := s.lock(name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, name, p, true); err != nil {
		return err
	}
	for id, seq := range cursors {
		if cur, ok := p.cursors[id]; !ok || cur < seq {
			p.cursors[id] = seq
		}
	}
	p.saved = true
	return nil
}

// Delete implements [framework.ProjectionCheckpointStore]: it drops the
// cursors and heads. The epoch, fencing tokens and progress stay. With a
// [controlplane.ResetClaim] in ctx it deletes only while the claim's holder
// holds the claim on that epoch's reset and the reset is not done; else it
// returns an error matching [controlplane.ErrResetClaimLost].
func (s *Store) Delete(ctx context.Context, name string) error {
	p, err := s.lock(name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if c, ok := controlplane.ResetClaimFrom(ctx); ok {
		if err := checkClaim(name, c, 0); err != nil {
			return err
		}
		if err := p.claimRefusal(name, c, "delete the cursors"); err != nil {
			return err
		}
	}
	if err := s.guard(ctx, name, p, true); err != nil {
		return err
	}
	p.cursors, p.heads = map[string]uint64{}, map[string]head{}
	p.saved = false
	return nil
}

// Names implements [framework.ProjectionCheckpointStore]: the projections
// with a stored checkpoint, sorted. As in redischeckpoint, versions other
// than 0 ("billing@v3") are not listed.
func (s *Store) Names(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{}
	for name, p := range s.projections {
		if _, v := framework.SplitVersionedName(name); p.saved && v == 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Cursors returns the cursors of the given streams (0 for unknown streams).
func (s *Store) Cursors(ctx context.Context, name string, streamIDs []string) (map[string]uint64, error) {
	p, err := s.lock(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(streamIDs))
	for _, id := range streamIDs {
		out[id] = p.cursors[id]
	}
	return out, nil
}

// Heads returns the cursors of the given streams (absent for streams
// without one) and, where known, the event applied at each cursor.
func (s *Store) Heads(ctx context.Context, name string, streamIDs []string) (map[string]controlplane.StreamHead, error) {
	p, err := s.lock(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make(map[string]controlplane.StreamHead, len(streamIDs))
	for _, id := range streamIDs {
		seq, ok := p.cursors[id]
		if !ok {
			continue
		}
		h := controlplane.StreamHead{StreamID: id, Sequence: seq}
		if hd, ok := p.heads[id]; ok && hd.seq == seq {
			h.EventID, h.Position = hd.eventID, clonePosition(hd.pos)
		}
		out[id] = h
	}
	return out, nil
}

func clonePosition(p *framework.Position) *framework.Position {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// Progress returns how far the stored state covers partition in the
// current epoch. Untracked is set when nothing is recorded, no fenced
// write was ever made for the partition and a checkpoint is stored.
func (s *Store) Progress(ctx context.Context, projection string, partition int32) (controlplane.PartitionProgress, error) {
	p, err := s.lock(projection)
	if err != nil {
		return controlplane.PartitionProgress{}, err
	}
	defer s.mu.Unlock()
	next, ok := p.progress[partition]
	if !ok {
		return controlplane.PartitionProgress{Untracked: !p.written[partition] && p.saved}, nil
	}
	return controlplane.PartitionProgress{Next: next, Recorded: true}, nil
}

// AdvancePartition raises the cursors of heads (never lowering one),
// records each head where it is the stream's cursor, and raises the
// partition's progress to next, atomically. ctx must carry the
// partition's fence.
func (s *Store) AdvancePartition(ctx context.Context, projection string, partition int32, heads []controlplane.StreamHead, next int64) error {
	if err := framework.ValidateProjectionName(projection); err != nil {
		return err
	}
	f, ok := controlplane.FenceFrom(ctx)
	if ok && f.Partition != partition {
		return fmt.Errorf("memcontrol: a checkpoint of partition %d carries the fence of partition %d", partition, f.Partition)
	}
	for _, h := range heads {
		if err := framework.ValidateStreamID(h.StreamID); err != nil {
			return err
		}
	}
	if !ok {
		return fmt.Errorf("memcontrol: AdvancePartition of %s partition %d needs a context with the partition's fence", projection, partition)
	}
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, projection, p, true); err != nil {
		return err
	}
	for _, h := range heads {
		if cur, ok := p.cursors[h.StreamID]; !ok || cur < h.Sequence {
			p.cursors[h.StreamID] = h.Sequence
		}
	}
	for _, h := range heads {
		if h.EventID != "" && p.cursors[h.StreamID] == h.Sequence {
			p.heads[h.StreamID] = head{seq: h.Sequence, eventID: h.EventID, pos: clonePosition(h.Position)}
		}
	}
	if old, ok := p.progress[partition]; !ok || old < next {
		p.progress[partition] = next
	}
	p.saved = true
	return nil
}

// CheckServer implements [controlplane.ServerChecker]: it always warns
// that the state is in memory and lost on exit.
func (s *Store) CheckServer(ctx context.Context) ([]string, error) {
	return []string{"memcontrol: the control plane is kept in this process's memory: checkpoints, fences, parked streams and control state are lost when it exits, and other processes do not see them"}, nil
}

// Ping implements [controlplane.Pinger]: memory is always reachable.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// FencedError reports a write whose fence is no longer current: it names
// the stale writer's fence and the current epoch and token. It matches
// [controlplane.ErrFenced].
type FencedError struct {
	Projection   string
	Partition    int32
	Held         controlplane.Fence // the fence the write carried
	CurrentEpoch uint64
	CurrentToken uint64 // newest token for the partition
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("memcontrol: projection %s partition %d: fenced: write carries epoch %d token %d, current is epoch %d token %d",
		e.Projection, e.Partition, e.Held.Epoch, e.Held.Token, e.CurrentEpoch, e.CurrentToken)
}

// Is matches [controlplane.ErrFenced].
func (e *FencedError) Is(target error) bool { return target == controlplane.ErrFenced }

// VersionClosedError reports a write or fence refused for a read-model
// version that a rebuild replaced or abandoned. It matches
// [controlplane.ErrVersionClosed].
type VersionClosedError struct {
	Projection string // the versioned name, "billing@v3"
	Partition  int32
}

func (e *VersionClosedError) Error() string {
	return fmt.Sprintf("memcontrol: projection %s partition %d: this read-model version was replaced or abandoned by a rebuild: nothing more is written to it", e.Projection, e.Partition)
}

// Is matches [controlplane.ErrVersionClosed].
func (e *VersionClosedError) Is(target error) bool { return target == controlplane.ErrVersionClosed }

// now is the time the store records, without a monotonic reading (as a
// time read back from storage).
func now() time.Time { return time.Now().UTC().Round(0) }
