package memcontrol

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

// resolutionsKept bounds the audit of resolutions per projection, as in
// redischeckpoint.
const resolutionsKept = 10_000

// parkRecord is a parked stream as stored: its JSON (a copy no caller can
// change) and the sequence and parked_at that identify the park. parked_at
// is compared as text, as encoding/json writes it, like redischeckpoint
// does: the same instant in another time zone is another park.
type parkRecord struct {
	raw []byte
	seq uint64
	at  string
}

// request is a requested resolution as stored, with its "at" as text.
type request struct {
	raw []byte
	at  string
}

func stamp(t time.Time) string { return t.Format(time.RFC3339Nano) }

// audit pushes a resolution to the audit list, newest first. s.mu must be
// held.
func (p *projection) audit(raw []byte) {
	p.resolutions = slices.Insert(p.resolutions, 0, raw)
	if len(p.resolutions) > resolutionsKept {
		p.resolutions = p.resolutions[:resolutionsKept]
	}
}

// parkedAt reports whether stream id is parked at sequence seq since at.
func (p *projection) parkedAt(id string, seq uint64, at time.Time) bool {
	r, ok := p.parked[id]
	return ok && r.seq == seq && r.at == stamp(at)
}

// Park records a parked stream, replacing an earlier record of the stream
// and dropping any resolution requested for it. A p.Resolving given is a
// resolution carried out in part before the stream parked again: it goes
// to the audit of resolutions in the same step. Fenced when ctx carries a
// fence.
func (s *Store) Park(ctx context.Context, projection string, ps controlplane.ParkedStream) error {
	var partial []byte
	if r := ps.Resolving; r != nil {
		c := *r
		c.Parked.Resolving = nil
		raw, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("memcontrol: encode resolution of %s: %w", ps.StreamID, err)
		}
		partial = raw
	}
	ps.Resolving = nil
	raw, err := json.Marshal(ps)
	if err != nil {
		return fmt.Errorf("memcontrol: encode parked stream %s: %w", ps.StreamID, err)
	}
	p, err := s.lock(projection)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, projection, p, true); err != nil {
		return fmt.Errorf("memcontrol: park %s of %s: %w", ps.StreamID, projection, err)
	}
	p.parked[ps.StreamID] = parkRecord{raw: raw, seq: ps.Sequence, at: stamp(ps.ParkedAt)}
	delete(p.resolving, ps.StreamID)
	if partial != nil {
		p.audit(partial)
	}
	return nil
}

// UpdateParked replaces the record of a stream still parked at the same
// event (same Sequence and ParkedAt) and reports whether it did. A
// requested resolution is kept. Fenced when ctx carries a fence.
func (s *Store) UpdateParked(ctx context.Context, projection string, ps controlplane.ParkedStream) (bool, error) {
	ps.Resolving = nil
	raw, err := json.Marshal(ps)
	if err != nil {
		return false, fmt.Errorf("memcontrol: encode parked stream %s: %w", ps.StreamID, err)
	}
	p, err := s.lock(projection)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, projection, p, true); err != nil {
		return false, fmt.Errorf("memcontrol: update parked %s of %s: %w", ps.StreamID, projection, err)
	}
	if !p.parkedAt(ps.StreamID, ps.Sequence, ps.ParkedAt) {
		return false, nil
	}
	p.parked[ps.StreamID] = parkRecord{raw: raw, seq: ps.Sequence, at: stamp(ps.ParkedAt)}
	return true, nil
}

// Parked lists the parked streams by stream ID, each with the resolution
// requested for it, if any.
func (s *Store) Parked(ctx context.Context, projection string) ([]controlplane.ParkedStream, error) {
	p, err := s.lock(projection)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return p.parkedStreams(projection, true)
}

// parkedStreams decodes the parked streams, sorted by stream ID, with
// their requests when withRequests. s.mu must be held.
func (p *projection) parkedStreams(projection string, withRequests bool) ([]controlplane.ParkedStream, error) {
	out := make([]controlplane.ParkedStream, 0, len(p.parked))
	for id, rec := range p.parked {
		var ps controlplane.ParkedStream
		if err := json.Unmarshal(rec.raw, &ps); err != nil {
			return nil, fmt.Errorf("memcontrol: parked stream %s of %s: %w", id, projection, err)
		}
		ps.StreamID, ps.Resolving = id, nil
		if req, ok := p.resolving[id]; ok && withRequests {
			var r controlplane.Resolution
			if err := json.Unmarshal(req.raw, &r); err != nil {
				return nil, fmt.Errorf("memcontrol: resolution of %s of %s: %w", id, projection, err)
			}
			if r.Parked.Sequence == ps.Sequence && r.Parked.ParkedAt.Equal(ps.ParkedAt) {
				ps.Resolving = &r
			}
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b controlplane.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out, nil
}

// RequestResolution records r for the stream while it is parked at
// r.Parked (same Sequence and ParkedAt) and no other request is pending,
// and reports whether it did. A zero r.At is set to now.
func (s *Store) RequestResolution(ctx context.Context, projection string, r controlplane.Resolution) (bool, error) {
	r.Parked.Resolving = nil
	if r.At.IsZero() {
		r.At = now()
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("memcontrol: encode resolution of %s: %w", r.StreamID, err)
	}
	p, err := s.lock(projection)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, projection, p, true); err != nil {
		return false, fmt.Errorf("memcontrol: request resolution of %s of %s: %w", r.StreamID, projection, err)
	}
	if !p.parkedAt(r.StreamID, r.Parked.Sequence, r.Parked.ParkedAt) {
		return false, nil
	}
	if _, pending := p.resolving[r.StreamID]; pending {
		return false, nil
	}
	p.resolving[r.StreamID] = request{raw: raw, at: stamp(r.At)}
	return true, nil
}

// Unpark removes the stream parked at r.Parked (same Sequence and
// ParkedAt) with its request and appends r to the audit of resolutions,
// atomically; it reports whether the stream was parked there. When r.At is
// set and the pending request is another one (a different At), the stream
// stays parked. A zero r.At is set to now in the audit. Fenced when ctx
// carries a fence.
func (s *Store) Unpark(ctx context.Context, projection string, r controlplane.Resolution) (bool, error) {
	r.Parked.Resolving = nil
	at := ""
	if !r.At.IsZero() {
		at = stamp(r.At)
	} else {
		r.At = now()
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("memcontrol: encode resolution of %s: %w", r.StreamID, err)
	}
	p, err := s.lock(projection)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if err := s.guard(ctx, projection, p, true); err != nil {
		return false, fmt.Errorf("memcontrol: unpark %s of %s: %w", r.StreamID, projection, err)
	}
	if !p.parkedAt(r.StreamID, r.Parked.Sequence, r.Parked.ParkedAt) {
		return false, nil
	}
	if req, pending := p.resolving[r.StreamID]; pending && at != "" && req.at != at {
		return false, nil
	}
	delete(p.parked, r.StreamID)
	delete(p.resolving, r.StreamID)
	p.audit(raw)
	return true, nil
}

// Resolutions returns the audit of resolutions, newest first, at most
// limit (all of them when limit is 0 or less).
func (s *Store) Resolutions(ctx context.Context, projection string, limit int) ([]controlplane.Resolution, error) {
	p, err := s.lock(projection)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	list := p.resolutions
	if limit > 0 && len(list) > limit {
		list = list[:limit]
	}
	out := make([]controlplane.Resolution, 0, len(list))
	for _, raw := range list {
		var r controlplane.Resolution
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("memcontrol: resolutions of %s: %w", projection, err)
		}
		out = append(out, r)
	}
	return out, nil
}
