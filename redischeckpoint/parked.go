package redischeckpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
)

// resolutionsKept bounds the audit list of resolutions per projection.
const resolutionsKept = 10_000

// Park records a parked stream of the projection (keys
// "{name}:parked", a hash of stream ID -> JSON). Parking an already parked
// stream replaces the record and drops a resolution requested for it. A
// p.Resolving given to Park is a resolution carried out in part before the
// stream parked again at p: it goes to the audit list in the same script. Made with a fence in ctx, the write is fenced
// like every other: a worker that lost its partition cannot park a stream.
func (s *Store) Park(ctx context.Context, projection string, p controlplane.ParkedStream) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	partial := ""
	if r := p.Resolving; r != nil {
		r.Parked.Resolving = nil
		raw, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("redischeckpoint: encode resolution of %s: %w", p.StreamID, err)
		}
		partial = string(raw)
	}
	p.Resolving = nil
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("redischeckpoint: encode parked stream %s: %w", p.StreamID, err)
	}
	if _, err := s.run(ctx, k, parkScript, []any{p.StreamID, string(raw), partial, strconv.Itoa(resolutionsKept)}, nil); err != nil {
		return fmt.Errorf("redischeckpoint: park %s of %s: %w", p.StreamID, projection, err)
	}
	return nil
}

// UpdateParked replaces the record of a stream that is still parked at the
// same event (same sequence and parked_at) and reports whether it did: an
// admin may have resolved it meanwhile, and an update must not park it
// again. A requested resolution is kept. Fenced like Park.
func (s *Store) UpdateParked(ctx context.Context, projection string, p controlplane.ParkedStream) (bool, error) {
	p.Resolving = nil
	raw, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: encode parked stream %s: %w", p.StreamID, err)
	}
	return s.atParked(ctx, projection, updateParkedScript, "update parked", p, string(raw))
}

// atParked runs one of the scripts that act on a stream only while it is
// parked at p's event.
func (s *Store) atParked(ctx context.Context, projection string, script *redis.Script, what string, p controlplane.ParkedStream, value string, more ...any) (bool, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return false, err
	}
	at := p.ParkedAt.Format(time.RFC3339Nano) // as encoding/json writes it
	args := append([]any{p.StreamID, value, strconv.FormatUint(p.Sequence, 10), at}, more...)
	res, err := s.run(ctx, k, script, args, nil)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: %s %s of %s: %w", what, p.StreamID, projection, err)
	}
	n, _ := res.(int64)
	if n == 2 {
		return false, nil
	}
	return n == 1, nil
}

// Parked lists the projection's parked streams, by stream ID, each with the
// resolution requested for it, if any.
func (s *Store) Parked(ctx context.Context, projection string) ([]controlplane.ParkedStream, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return nil, err
	}
	pipe := s.client.Pipeline()
	parked := pipe.HGetAll(ctx, k.parked)
	requests := pipe.HGetAll(ctx, k.resolving)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redischeckpoint: parked streams of %s: %w", projection, err)
	}
	out := make([]controlplane.ParkedStream, 0, len(parked.Val()))
	for id, raw := range parked.Val() {
		var p controlplane.ParkedStream
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, fmt.Errorf("redischeckpoint: key %s field %q: %w", k.parked, id, err)
		}
		p.Resolving = nil
		if raw, ok := requests.Val()[id]; ok {
			var r controlplane.Resolution
			if err := json.Unmarshal([]byte(raw), &r); err != nil {
				return nil, fmt.Errorf("redischeckpoint: key %s field %q: %w", k.resolving, id, err)
			}
			// A request for an earlier park of the stream is void (Park
			// drops it; this covers a store written otherwise).
			if r.Parked.Sequence == p.Sequence && r.Parked.ParkedAt.Equal(p.ParkedAt) {
				p.Resolving = &r
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b controlplane.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out, nil
}

// RequestResolution records an admin's retry or skip of a stream still
// parked at r.Parked ("{name}:resolving", a hash of stream ID -> JSON),
// unless another request is pending, and reports whether it did. The worker
// owning the stream's partition carries it out and then calls Unpark.
func (s *Store) RequestResolution(ctx context.Context, projection string, r controlplane.Resolution) (bool, error) {
	r.Parked.Resolving = nil
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: encode resolution of %s: %w", r.StreamID, err)
	}
	return s.atParked(ctx, projection, requestScript, "request resolution of", r.Parked, string(raw))
}

// Unpark removes the stream parked at r.Parked (same sequence and
// parked_at) with its request and appends r to the projection's audit
// list ("{name}:resolutions") in one script; it reports whether the stream
// was parked there. r.At is the time of the request carried out: if the
// stream's request is another one now, the stream stays parked. Fenced
// like Park: a worker that lost the partition cannot unpark.
func (s *Store) Unpark(ctx context.Context, projection string, r controlplane.Resolution) (bool, error) {
	r.Parked.Resolving = nil
	at := ""
	if !r.At.IsZero() {
		at = r.At.Format(time.RFC3339Nano) // as encoding/json writes it
	} else {
		r.At = time.Now().UTC()
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: encode resolution of %s: %w", r.StreamID, err)
	}
	return s.atParked(ctx, projection, unparkScript, "unpark", r.Parked, string(raw), strconv.Itoa(resolutionsKept), at)
}

// Resolutions returns the newest resolutions first, at most limit.
func (s *Store) Resolutions(ctx context.Context, projection string, limit int) ([]controlplane.Resolution, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return nil, err
	}
	raws, err := s.client.LRange(ctx, k.resolutions, 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: resolutions of %s: %w", projection, err)
	}
	out := make([]controlplane.Resolution, 0, len(raws))
	for _, raw := range raws {
		var r controlplane.Resolution
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("redischeckpoint: key %sresolutions: %w", k.base, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Ping checks that Redis answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redischeckpoint: ping: %w", err)
	}
	return nil
}
