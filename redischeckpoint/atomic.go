package redischeckpoint

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
)

// ApplyFunc turns one event into Redis writes, recorded on w. It runs
// before anything is sent, so it cannot read Redis; writes that depend on
// stored values (a correction replacing a value in a sum) use operations
// that run inside the script, such as [Writes.Replace]. An unknown event type
// records nothing. An error stops the batch at e.
type ApplyFunc func(e framework.Event, w *Writes) error

// AtomicProjection is a projection whose read model lives in Redis, next to
// its cursors. Each batch of events becomes one Lua script that checks the
// fence the context carries, skips every event at or below its stream's
// cursor, runs the writes of the others and raises their cursors: the read
// model and the cursors never disagree, so re-delivered events (after a
// crash between applying and committing offsets, or a rebalance) count
// once.
//
// It implements [framework.Projection], [framework.BatchApplier],
// [framework.SequenceTracker] and [framework.Resetter]. Its cursors are the
// ones [Store] keeps for the same name, so the Store doubles as its
// checkpoint store.
type AtomicProjection struct {
	store *Store
	keys  keys
	rm    string // read-model key prefix
	apply ApplyFunc

	mu      sync.Mutex
	skipped int64
}

// maxEventsPerScript bounds one script call; a larger batch is several
// calls, each atomic.
const maxEventsPerScript = 500

// NewAtomicProjection returns a projection named name that applies events
// with apply. The name is part of every key: renaming the projection starts
// an empty read model.
func (s *Store) NewAtomicProjection(name string, apply ApplyFunc) (*AtomicProjection, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, err
	}
	if apply == nil {
		return nil, fmt.Errorf("redischeckpoint: NewAtomicProjection %s: nil ApplyFunc", name)
	}
	return &AtomicProjection{store: s, keys: k, rm: k.base + "rm:", apply: apply}, nil
}

// Name implements [framework.Projection].
func (p *AtomicProjection) Name() string { return p.keys.name }

// Key returns the read-model key made of parts, for writes and for queries:
// "projector:{name}:rm:part1:part2".
func (p *AtomicProjection) Key(parts ...string) string { return p.rm + strings.Join(parts, ":") }

// Client returns the Redis client, for queries of the read model.
func (p *AtomicProjection) Client() redis.UniversalClient { return p.store.client }

// Skipped returns how many events the scripts skipped as duplicates.
func (p *AtomicProjection) Skipped() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Apply implements [framework.Projection].
func (p *AtomicProjection) Apply(ctx context.Context, e framework.Event) error {
	_, err := p.ApplyBatch(ctx, []framework.Event{e})
	return err
}

// LastSequence implements [framework.SequenceTracker].
func (p *AtomicProjection) LastSequence(ctx context.Context, streamID string) (uint64, error) {
	c, err := p.store.Cursors(ctx, p.keys.name, []string{streamID})
	if err != nil {
		return 0, err
	}
	return c[streamID], nil
}

// Reset implements [framework.Resetter]: it drops every read-model key and
// the cursors. Keys are found with SCAN (on every master of a Cluster).
func (p *AtomicProjection) Reset(ctx context.Context) error {
	pattern := globEscape(p.rm) + "*"
	unlink := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := c.Unlink(ctx, batch...).Err()
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cluster, ok := p.store.client.(*redis.ClusterClient); ok {
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return unlink(ctx, c) })
	} else {
		err = unlink(ctx, p.store.client)
	}
	if err != nil {
		return fmt.Errorf("redischeckpoint: reset read model %s*: %w", p.rm, err)
	}
	return p.store.Delete(ctx, p.keys.name)
}

// ApplyBatch implements [framework.BatchApplier]. It returns how many
// leading events are durably processed: applied, or skipped because their
// cursor was already at or past them.
func (p *AtomicProjection) ApplyBatch(ctx context.Context, events []framework.Event) (int, error) {
	done := 0
	for done < len(events) {
		end := min(done+maxEventsPerScript, len(events))
		args, built, buildErr := p.buildArgs(events[done:end])
		if built > 0 {
			n, err := p.run(ctx, args, events[done:done+built])
			done += n
			if err != nil {
				return done, err
			}
		}
		if buildErr != nil {
			return done, buildErr
		}
	}
	return done, nil
}

// buildArgs records the writes of each event and encodes them as script
// arguments. It stops at the first event whose ApplyFunc fails, returning
// how many events it encoded and that error.
func (p *AtomicProjection) buildArgs(events []framework.Event) ([]any, int, error) {
	args := make([]any, 1, 1+len(events)*9)
	w := &Writes{prefix: p.rm}
	n := 0
	var failed error
	for _, e := range events {
		w.ops, w.err = w.ops[:0], nil
		if err := p.apply(e, w); err != nil {
			failed = err
			break
		}
		if w.err != nil {
			failed = fmt.Errorf("%w: stream %s sequence %d: %w", ErrInvalidWrite, e.StreamID, e.Sequence, w.err)
			break
		}
		at := ""
		if e.Position != nil {
			at = strconv.FormatInt(int64(e.Position.Partition), 10) + "/" + strconv.FormatInt(e.Position.Offset, 10)
		}
		args = append(args, e.StreamID, strconv.FormatUint(e.Sequence, 10), e.EventID, at, strconv.Itoa(len(w.ops)))
		for _, o := range w.ops {
			args = append(args, o.name, strconv.Itoa(len(o.args)))
			for _, a := range o.args {
				args = append(args, a)
			}
		}
		n++
	}
	args[0] = strconv.Itoa(n)
	return args, n, failed
}

// run executes one script call over events and translates its answer.
func (p *AtomicProjection) run(ctx context.Context, args []any, events []framework.Event) (int, error) {
	streams := make([]string, len(events))
	for i, e := range events {
		streams[i] = e.StreamID
	}
	reply, err := p.store.run(ctx, p.keys, applyScript, args, streams)
	if err != nil {
		return 0, err
	}
	res, _ := reply.([]any)
	if len(res) != 5 {
		return 0, fmt.Errorf("redischeckpoint: apply script of %s: unexpected reply %v", p.keys.name, reply)
	}
	status, _ := res[0].(string)
	processed, _ := res[1].(int64)
	skipped, _ := res[3].(int64)
	p.mu.Lock()
	p.skipped += skipped
	p.mu.Unlock()
	switch status {
	case "OK":
		return int(processed), nil
	case "GAP":
		e := events[processed]
		cursor, _ := strconv.ParseUint(fmt.Sprint(res[4]), 10, 64)
		return int(processed), &framework.GapError{StreamID: e.StreamID, Cursor: cursor, Got: e.Sequence, EventID: e.EventID}
	}
	return 0, fmt.Errorf("redischeckpoint: apply script of %s: unexpected status %v", p.keys.name, res[0])
}

// Writes records the Redis writes of one event. Every key must be a
// read-model key of the projection (see [AtomicProjection.Key]); a write
// to any other key is refused before anything is sent.
type Writes struct {
	prefix string
	ops    []op
	err    error
}

type op struct {
	name string
	args []string
}

// HashField names one field of one hash.
type HashField struct {
	Key   string
	Field string
}

// Key returns the read-model key made of parts, like [AtomicProjection.Key].
func (w *Writes) Key(parts ...string) string { return w.prefix + strings.Join(parts, ":") }

func (w *Writes) add(name string, keys []string, args ...string) {
	for _, k := range keys {
		if !strings.HasPrefix(k, w.prefix) || len(k) == len(w.prefix) {
			if w.err == nil {
				w.err = fmt.Errorf("%s %q: key outside the read-model namespace %q", name, k, w.prefix)
			}
			return
		}
	}
	w.ops = append(w.ops, op{name: name, args: args})
}

// HSet sets field of the hash at key.
func (w *Writes) HSet(key, field, value string) { w.add("HSET", []string{key}, key, field, value) }

// HDel deletes fields of the hash at key.
func (w *Writes) HDel(key string, fields ...string) {
	w.add("HDEL", []string{key}, append([]string{key}, fields...)...)
}

// HIncrBy adds n to field of the hash at key.
func (w *Writes) HIncrBy(key, field string, n int64) {
	w.add("HINCRBY", []string{key}, key, field, strconv.FormatInt(n, 10))
}

// Set sets the string at key.
func (w *Writes) Set(key, value string) { w.add("SET", []string{key}, key, value) }

// IncrBy adds n to the integer at key.
func (w *Writes) IncrBy(key string, n int64) {
	w.add("INCRBY", []string{key}, key, strconv.FormatInt(n, 10))
}

// Del deletes key.
func (w *Writes) Del(key string) { w.add("DEL", []string{key}, key) }

// SAdd adds members to the set at key.
func (w *Writes) SAdd(key string, members ...string) {
	w.add("SADD", []string{key}, append([]string{key}, members...)...)
}

// SRem removes members from the set at key.
func (w *Writes) SRem(key string, members ...string) {
	w.add("SREM", []string{key}, append([]string{key}, members...)...)
}

// Replace sets the integer field of the hash at key to value, replacing
// (not adding to) what was there, and keeps aggregates right inside the
// script: every sum field is adjusted by the difference to the old value
// (absent counts as 0), and every count field is raised by one when the
// field did not exist before. A correction of a metered value is one
// Replace.
func (w *Writes) Replace(key, field string, value int64, sums, counts []HashField) {
	keys := []string{key}
	args := []string{key, field, strconv.FormatInt(value, 10), strconv.Itoa(len(sums))}
	for _, s := range sums {
		keys = append(keys, s.Key)
		args = append(args, s.Key, s.Field)
	}
	args = append(args, strconv.Itoa(len(counts)))
	for _, c := range counts {
		keys = append(keys, c.Key)
		args = append(args, c.Key, c.Field)
	}
	w.add("REPLACE", keys, args...)
}

// MaxReplaceFields is the most fields one ReplaceFields call takes.
const MaxReplaceFields = 1000

// Size limits of the writes of one event, checked before anything is sent
// (a write above them is an [ErrInvalidWrite]). A write's size is the
// number of fields and members it changes: 1 for HSet, HIncrBy, Set,
// IncrBy and Del, the fields for HDel, the members for SAdd and SRem,
// 1+len(sums)+len(counts) for Replace, and len(fields) times
// 1+len(sums)+len(counts) for ReplaceFields.
const (
	// MaxWriteValues is the largest size of one write.
	MaxWriteValues = 10_000
	// MaxEventValues is the largest sum of the sizes of one event's writes.
	MaxEventValues = 100_000
)

// ReplaceFields is Replace for many fields of one hash at once, in a few
// commands instead of several per field: it sets the fields of the hash at
// key to values (replacing what was there), adjusts the same fields of
// every hash in sums by the differences (absent counts as 0), and raises the
// same fields of every hash in counts by one for each field that did not
// exist before. One day's quarter-hour values of a meter, summed per
// balance group and day, is one ReplaceFields.
func (w *Writes) ReplaceFields(key string, fields []string, values []int64, sums, counts []string) {
	switch {
	case len(fields) != len(values):
		w.fail(fmt.Errorf("ReplaceFields %q: %d fields but %d values", key, len(fields), len(values)))
		return
	case len(fields) == 0:
		return
	case len(fields) > MaxReplaceFields:
		w.fail(fmt.Errorf("ReplaceFields %q: %d fields, at most %d", key, len(fields), MaxReplaceFields))
		return
	}
	keys := append(append([]string{key}, sums...), counts...)
	args := make([]string, 0, 4+2*len(fields)+len(sums)+len(counts))
	args = append(args, key, strconv.Itoa(len(fields)))
	args = append(args, fields...)
	for _, v := range values {
		args = append(args, strconv.FormatInt(v, 10))
	}
	args = append(args, strconv.Itoa(len(sums)))
	args = append(args, sums...)
	args = append(args, strconv.Itoa(len(counts)))
	args = append(args, counts...)
	w.add("REPLACE_FIELDS", keys, args...)
}

func (w *Writes) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// globEscape escapes the characters SCAN MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
