package appendguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/projector-dev/projector/framework"
)

// Memory is a [Registry] in one process's memory: for tests and the
// embedded demo, where every writer shares the process. Its zero value is
// not usable; call [NewMemory].
type Memory struct {
	mu      sync.Mutex
	streams map[string]*memStream
	now     func() time.Time
}

type memStream struct {
	head    Head
	pending *Reservation
	last    string // the token of the last reservation resolved as written
}

var _ Registry = (*Memory)(nil)

// NewMemory returns an empty registry.
func NewMemory() *Memory {
	return &Memory{streams: map[string]*memStream{}, now: time.Now}
}

// NewToken returns a random reservation token.
func NewToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reserve implements [Registry].
func (m *Memory) Reserve(ctx context.Context, streamID string, expected framework.ExpectedVersion, n int, writer string, lease time.Duration) (Reservation, error) {
	if err := CheckReserve(streamID, n, writer, lease); err != nil {
		return Reservation{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamID]
	if s == nil {
		return Reservation{}, ErrUnknownStream
	}
	if !expected.Check(s.head.Sequence) {
		return Reservation{}, &framework.VersionConflictError{StreamID: streamID, Expected: expected, Actual: s.head.Sequence}
	}
	now := m.now()
	if p := s.pending; p != nil {
		if now.Before(p.Expires) {
			return Reservation{}, &BusyError{StreamID: streamID, Writer: p.Writer, Left: p.Expires.Sub(now)}
		}
		return Reservation{}, &ExpiredError{Reservation: *p}
	}
	r := Reservation{
		StreamID: streamID, Token: NewToken(), Writer: writer, Head: s.head, First: s.head.Sequence + 1, N: n,
		Partition: -1, FirstOffset: -1, LastOffset: -1, Expires: now.Add(lease),
	}
	p := r
	s.pending = &p
	return r, nil
}

// Seed implements [Registry].
func (m *Memory) Seed(ctx context.Context, streamID string, head Head) (Head, error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return Head{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamID]
	if s == nil {
		s = &memStream{head: head}
		m.streams[streamID] = s
	}
	return s.head, nil
}

// Record implements [Registry].
func (m *Memory) Record(ctx context.Context, r Reservation, partition int32, first, last int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[r.StreamID]
	if s == nil || s.pending == nil || s.pending.Token != r.Token || !m.now().Before(s.pending.Expires) {
		return ErrLeaseLost
	}
	s.pending.Partition, s.pending.FirstOffset, s.pending.LastOffset = partition, first, last
	return nil
}

// Commit implements [Registry].
func (m *Memory) Commit(ctx context.Context, r Reservation, lastOffset int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[r.StreamID]
	switch {
	case s != nil && s.pending != nil && s.pending.Token == r.Token:
		s.resolve(true, lastOffset)
		return nil
	case s != nil && s.last == r.Token:
		return nil
	default:
		return ErrResolvedUnwritten
	}
}

// Resolve implements [Registry].
func (m *Memory) Resolve(ctx context.Context, r Reservation, written bool, lastOffset int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[r.StreamID]; s != nil && s.pending != nil && s.pending.Token == r.Token {
		s.resolve(written, lastOffset)
	}
	return nil
}

func (s *memStream) resolve(written bool, lastOffset int64) {
	p := s.pending
	s.pending = nil
	if written {
		s.head = Head{Sequence: p.Last(), Offset: lastOffset}
		s.last = p.Token
	}
}

// Get implements [Registry].
func (m *Memory) Get(ctx context.Context, streamID string) (Head, *Reservation, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamID]
	if s == nil {
		return Head{}, nil, false, nil
	}
	var p *Reservation
	if s.pending != nil {
		c := *s.pending
		p = &c
	}
	return s.head, p, true, nil
}

// CheckReserve validates the arguments of [Registry.Reserve].
func CheckReserve(streamID string, n int, writer string, lease time.Duration) error {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return err
	}
	switch {
	case n < 1:
		return errors.New("appendguard: a reservation covers at least one sequence")
	case writer == "":
		return errors.New("appendguard: a reservation needs the writer's transactional ID")
	case lease <= 0:
		return errors.New("appendguard: a reservation needs a positive lease")
	}
	return nil
}
