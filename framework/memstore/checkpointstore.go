package memstore

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/projector-dev/projector/framework"
)

// CheckpointStore is an in-memory [framework.ProjectionCheckpointStore].
// The zero value is an empty store ready to use.
type CheckpointStore struct {
	mu          sync.Mutex
	checkpoints map[string]*framework.GlobalProjectionCheckpoint
}

var _ framework.ProjectionCheckpointStore = (*CheckpointStore)(nil)

// NewCheckpointStore returns an empty store.
func NewCheckpointStore() *CheckpointStore { return &CheckpointStore{} }

// Load implements [framework.ProjectionCheckpointStore]; it returns a copy.
func (s *CheckpointStore) Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoints[name].Clone(), nil
}

// Save implements [framework.ProjectionCheckpointStore]; it stores a copy.
func (s *CheckpointStore) Save(ctx context.Context, name string, cp *framework.GlobalProjectionCheckpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checkpoints == nil {
		s.checkpoints = make(map[string]*framework.GlobalProjectionCheckpoint)
	}
	s.checkpoints[name] = cp.Clone()
	return nil
}

// Advance implements [framework.ProjectionCheckpointStore].
func (s *CheckpointStore) Advance(ctx context.Context, name string, cursors map[string]uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for id := range cursors {
		if err := framework.ValidateStreamID(id); err != nil {
			return err
		}
	}
	if len(cursors) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checkpoints == nil {
		s.checkpoints = make(map[string]*framework.GlobalProjectionCheckpoint)
	}
	cp := s.checkpoints[name]
	if cp == nil {
		cp = framework.NewGlobalProjectionCheckpoint()
		s.checkpoints[name] = cp
	}
	for id, seq := range cursors {
		cp.Advance(id, seq)
	}
	return nil
}

// Delete implements [framework.ProjectionCheckpointStore].
func (s *CheckpointStore) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.checkpoints, name)
	return nil
}

// Names implements [framework.ProjectionCheckpointStore].
func (s *CheckpointStore) Names(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.checkpoints)), nil
}
