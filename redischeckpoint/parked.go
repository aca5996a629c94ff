package redischeckpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/projector-dev/projector/framework"
)

// resolutionsKept bounds the audit list of resolutions per projection.
const resolutionsKept = 10_000

// Park records a parked stream of the projection (keys
// "{name}:parked", a hash of stream ID -> JSON). Parking an already parked
// stream replaces the record. Made with a fence in ctx, the write is fenced
// like every other: a worker that lost its partition cannot park a stream.
func (s *Store) Park(ctx context.Context, projection string, p framework.ParkedStream) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("redischeckpoint: encode parked stream %s: %w", p.StreamID, err)
	}
	if _, err := s.run(ctx, k, parkScript, []any{p.StreamID, string(raw)}, nil); err != nil {
		return fmt.Errorf("redischeckpoint: park %s of %s: %w", p.StreamID, projection, err)
	}
	return nil
}

// UpdateParked replaces the record of a stream that is still parked at the
// same event (same sequence and parked_at) and reports whether it did: an
// admin may have resolved the stream meanwhile, and an update must not park
// it again. Fenced like Park.
func (s *Store) UpdateParked(ctx context.Context, projection string, p framework.ParkedStream) (bool, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return false, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: encode parked stream %s: %w", p.StreamID, err)
	}
	at := p.ParkedAt.Format(time.RFC3339Nano) // as encoding/json writes it
	res, err := s.run(ctx, k, updateParkedScript, []any{p.StreamID, string(raw), strconv.FormatUint(p.Sequence, 10), at}, nil)
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: update parked %s of %s: %w", p.StreamID, projection, err)
	}
	n, _ := res.(int64)
	return n == 1, nil
}

// Parked lists the projection's parked streams, by stream ID.
func (s *Store) Parked(ctx context.Context, projection string) ([]framework.ParkedStream, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return nil, err
	}
	all, err := s.client.HGetAll(ctx, k.parked).Result()
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: parked streams of %s: %w", projection, err)
	}
	out := make([]framework.ParkedStream, 0, len(all))
	for id, raw := range all {
		var p framework.ParkedStream
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, fmt.Errorf("redischeckpoint: key %sparked field %q: %w", k.base, id, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b framework.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out, nil
}

// Unpark removes a parked stream and appends r to the projection's audit
// list ("{name}:resolutions") in one transaction. It reports whether the
// stream was parked.
func (s *Store) Unpark(ctx context.Context, projection string, r framework.Resolution) (bool, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return false, err
	}
	raw, err := s.client.HGet(ctx, k.parked, r.StreamID).Result()
	if isNil(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redischeckpoint: read parked %s: %w", r.StreamID, err)
	}
	_ = json.Unmarshal([]byte(raw), &r.Parked)
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	entry, _ := json.Marshal(r)
	pipe := s.client.TxPipeline()
	del := pipe.HDel(ctx, k.parked, r.StreamID)
	pipe.LPush(ctx, k.base+"resolutions", entry)
	pipe.LTrim(ctx, k.base+"resolutions", 0, resolutionsKept-1)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("redischeckpoint: unpark %s: %w", r.StreamID, err)
	}
	return del.Val() == 1, nil
}

// Resolutions returns the newest resolutions first, at most limit.
func (s *Store) Resolutions(ctx context.Context, projection string, limit int) ([]framework.Resolution, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return nil, err
	}
	raws, err := s.client.LRange(ctx, k.base+"resolutions", 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: resolutions of %s: %w", projection, err)
	}
	out := make([]framework.Resolution, 0, len(raws))
	for _, raw := range raws {
		var r framework.Resolution
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
