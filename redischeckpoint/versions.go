package redischeckpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Read-model versions (blue/green rebuilds), beside the projection's keys:
//
//	projector:{billing}:versions   hash: live (the live version, absent = 0)
//	                               and state (JSON controlplane.Versions)
//	projector:{billing}:v3:...     every key of version 3 (version 0 is the
//	                               unversioned layout, projector:{billing}:...)
//
// Every version shares the projection's hash slot, so the registry, the
// live pointer and the versions' meta hashes change in one MULTI/EXEC. A
// version that stops being live or building is closed (its meta holds
// "closed"): the guard of every script refuses writes to it and no fence is
// handed out for it, so a replica that still runs it writes nothing there.
// When it is dropped, its keys go and only the closed meta stays behind as
// a tombstone.

var (
	// ErrRebuildInProgress reports a rebuild asked while another runs.
	ErrRebuildInProgress = errors.New("redischeckpoint: a rebuild is in progress")
	// ErrReplayInProgress reports a rebuild asked while an in-place replay
	// of the live version runs.
	ErrReplayInProgress = errors.New("redischeckpoint: a replay of the live version is in progress")
	// ErrNoRebuild reports a switch or abort without the rebuild it names.
	ErrNoRebuild = errors.New("redischeckpoint: no such rebuild in progress")
)

// historyKept is how many ended rebuilds the registry remembers.
const historyKept = 20

// Versions returns the projection's registry of versions (the zero value,
// live version 0, when no rebuild ever ran). projection is the bare name.
func (s *Store) Versions(ctx context.Context, projection string) (controlplane.Versions, error) {
	k, err := s.bareKeys(projection)
	if err != nil {
		return controlplane.Versions{}, err
	}
	return readVersions(ctx, s.client, k)
}

func readVersions(ctx context.Context, c redis.Cmdable, k keys) (controlplane.Versions, error) {
	h, err := c.HGetAll(ctx, k.versions).Result()
	if err != nil {
		return controlplane.Versions{}, fmt.Errorf("redischeckpoint: versions of %s: %w", k.name, err)
	}
	var v controlplane.Versions
	if raw := h["state"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return controlplane.Versions{}, fmt.Errorf("redischeckpoint: key %s field state: %w", k.versions, err)
		}
	}
	if live := h["live"]; live != "" {
		n, err := strconv.ParseUint(live, 10, 64)
		if err != nil {
			return controlplane.Versions{}, fmt.Errorf("redischeckpoint: key %s field live: %q is not a version", k.versions, live)
		}
		v.Live = n // the pointer readers resolve is the truth
	}
	v.Last = max(v.Last, v.Live)
	return v, nil
}

// Live returns the versioned name of the projection's live version:
// "billing" (version 0) or "billing@v3". Readers resolve it once per
// query and read that version's keys.
func (s *Store) Live(ctx context.Context, projection string) (string, error) {
	k, err := s.bareKeys(projection)
	if err != nil {
		return "", err
	}
	v, err := uintOrZero(s.client.HGet(ctx, k.versions, "live").Result())
	if err != nil {
		return "", fmt.Errorf("redischeckpoint: live version of %s: %w", projection, err)
	}
	return framework.VersionedName(projection, v), nil
}

// bareKeys returns the keys of a projection named without a version.
func (s *Store) bareKeys(projection string) (keys, error) {
	if _, v := framework.SplitVersionedName(projection); v > 0 {
		return keys{}, fmt.Errorf("redischeckpoint: %q names a version; give the projection's name", projection)
	}
	return s.keysFor(projection)
}

// updateVersions runs change on the registry in an optimistic transaction
// (WATCH, retried on conflict); change returns the commands to run with
// the new registry, which is written with them.
func (s *Store) updateVersions(ctx context.Context, projection string, change func(*controlplane.Versions) (func(redis.Pipeliner), error)) (controlplane.Versions, error) {
	return s.updateVersionsGuarded(ctx, projection, nil, change)
}

// updateVersionsGuarded is updateVersions with a guard run inside the
// optimistic transaction, after the registry is read and before change:
// it may WATCH more keys and read them (the transaction then fails and is
// tried again when they change before it commits), and its error ends the
// update with nothing changed.
func (s *Store) updateVersionsGuarded(ctx context.Context, projection string, guard func(*redis.Tx, controlplane.Versions) error,
	change func(*controlplane.Versions) (func(redis.Pipeliner), error)) (controlplane.Versions, error) {
	k, err := s.bareKeys(projection)
	if err != nil {
		return controlplane.Versions{}, err
	}
	var out controlplane.Versions
	for range 50 {
		err = s.client.Watch(ctx, func(tx *redis.Tx) error {
			v, err := readVersions(ctx, tx, k)
			if err != nil {
				return err
			}
			if guard != nil {
				if err := guard(tx, v); err != nil {
					return err
				}
			}
			extra, err := change(&v)
			if err != nil {
				return err
			}
			raw, err := json.Marshal(v)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, k.versions, "state", raw, "live", strconv.FormatUint(v.Live, 10))
				if extra != nil {
					extra(p)
				}
				return nil
			})
			out = v
			if err == nil && s.cfg.WaitReplicas > 0 {
				// The live pointer and the versions' states, on the replicas
				// before anyone acts on them (WAIT on the transaction's
				// connection).
				err = s.waitOn(ctx, tx, k.name, "the versions registry")
			}
			return err
		}, k.versions)
		if !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	if err != nil {
		return controlplane.Versions{}, err
	}
	return out, nil
}

// StartRebuild creates the next version of the projection beside the live
// one and records it as building: replicas that run the projection's
// versions (kafkarunner.VersionedRunner) start consuming into it with a
// consumer group of its own. It fails with [ErrRebuildInProgress] while
// another rebuild runs. r's Version and StartedAt are set.
func (s *Store) StartRebuild(ctx context.Context, projection string, r controlplane.Rebuild) (controlplane.Rebuild, error) {
	_, err := s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		if v.Building != nil {
			return nil, fmt.Errorf("%w: %s@v%d, started by %s at %s", ErrRebuildInProgress, projection, v.Building.Version,
				v.Building.By, v.Building.StartedAt.Format(time.RFC3339))
		}
		// An in-place replay of the live version races a rebuild.
		liveKeys, err := s.keysFor(framework.VersionedName(projection, v.Live))
		if err != nil {
			return nil, err
		}
		if raw, err := s.client.HGet(ctx, liveKeys.control, "replay").Result(); err == nil {
			var rp controlplane.Replay
			if json.Unmarshal([]byte(raw), &rp) == nil &&
				(rp.Phase == controlplane.ReplayPausing || rp.Phase == controlplane.ReplayResetting || rp.Phase == controlplane.ReplayRebuild) {
				return nil, fmt.Errorf("%w: replay %s of %s is in phase %s", ErrReplayInProgress, rp.ID, liveKeys.name, rp.Phase)
			}
		}
		r.Version, r.StartedAt = v.Last+1, time.Now().UTC()
		v.Last = r.Version
		v.Building = &r
		k, err := s.keysFor(framework.VersionedName(projection, r.Version))
		if err != nil {
			return nil, err
		}
		return func(p redis.Pipeliner) {
			// A fresh version: nothing of an earlier use of the number
			// (there is none: Last only grows) may remain.
			p.Unlink(ctx, k.list()...)
			p.HSet(ctx, k.meta, "created_at", r.StartedAt.Format(time.RFC3339Nano))
		}, nil
	})
	return r, err
}

// UpdateRebuild records what a replica found about the rebuild of version:
// blocked says why it cannot switch yet ("" when nothing blocks it), and
// caughtUp whether it has caught up with the topic.
func (s *Store) UpdateRebuild(ctx context.Context, projection string, version uint64, blocked string, caughtUp bool) error {
	_, err := s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		if v.Building == nil || v.Building.Version != version {
			return nil, fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		v.Building.Blocked = blocked
		if caughtUp && v.Building.CaughtUpAt.IsZero() {
			v.Building.CaughtUpAt = time.Now().UTC()
		}
		return nil, nil
	})
	return err
}

// FreezeLive asks the replicas to hold the live version's writes until
// until (zero: end the freeze), for the switch to the rebuild of version
// (see [controlplane.Rebuild.FrozenUntil]). It fails with [ErrNoRebuild]
// unless version is the rebuild in progress.
func (s *Store) FreezeLive(ctx context.Context, projection string, version uint64, until time.Time, by string) error {
	_, err := s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		if v.Building == nil || v.Building.Version != version {
			return nil, fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		if err := controlplane.Freeze(v.Building, until, by, time.Now()); err != nil {
			return nil, err
		}
		return nil, nil
	})
	return err
}

// SwitchLive makes the rebuilt version live, in one transaction: the live
// pointer moves to it, the version it replaces is closed (no replica writes
// to it any more) and retires after the rebuild's grace period (never, when
// the rebuild keeps it). It fails with [ErrNoRebuild] unless version is
// the rebuild in progress.
//
// The new version must hold at the switch what the live one holds: every
// stream's cursor at least the live version's. The live version's cursors
// are read under WATCH in the switch's transaction, which also closes the
// live version to writes: if the live version applies anything between
// the read and the commit, the transaction is tried again; if the new
// version is behind, the switch is refused with a [*controlplane.SwitchBehindError]
// and nothing changes. So a reader never sees the model go back at the
// switch.
func (s *Store) SwitchLive(ctx context.Context, projection string, version uint64, by string) (controlplane.Versions, error) {
	guard := func(tx *redis.Tx, v controlplane.Versions) error {
		if v.Building == nil || v.Building.Version != version {
			return nil // change says so
		}
		liveKeys, err := s.keysFor(framework.VersionedName(projection, v.Live))
		if err != nil {
			return err
		}
		newKeys, err := s.keysFor(framework.VersionedName(projection, version))
		if err != nil {
			return err
		}
		// The new version's cursors only grow: watching the live ones is
		// enough to keep the comparison true until the commit.
		if err := tx.Watch(ctx, liveKeys.cursors).Err(); err != nil {
			return err
		}
		live, err := readCursorHash(ctx, tx, liveKeys.cursors)
		if err != nil {
			return err
		}
		next, err := readCursorHash(ctx, tx, newKeys.cursors)
		if err != nil {
			return err
		}
		if n, ex := controlplane.CompareCursors(live, next); n > 0 {
			return &controlplane.SwitchBehindError{Projection: projection, Version: version, Behind: n, Examples: ex}
		}
		return nil
	}
	return s.updateVersionsGuarded(ctx, projection, guard, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		if v.Building == nil || v.Building.Version != version {
			return nil, fmt.Errorf("%w: %s@v%d", ErrNoRebuild, projection, version)
		}
		now := time.Now().UTC()
		old := v.Live
		b := *v.Building
		b.EndedAt, b.Outcome, b.Blocked = now, "switched", ""
		b.FrozenUntil, b.FrozenBy = time.Time{}, ""
		v.Live, v.Building = version, nil
		v.SwitchedAt, v.SwitchedBy, v.SwitchedFrom = now, by, old
		v.Retiring = append(v.Retiring, controlplane.Retiring{Version: old, RetireAt: now.Add(b.Grace), Keep: b.Keep,
			Why: fmt.Sprintf("replaced by v%d", version)})
		v.History = prependHistory(v.History, b)
		oldKeys, err := s.keysFor(framework.VersionedName(projection, old))
		if err != nil {
			return nil, err
		}
		return func(p redis.Pipeliner) { p.HSet(ctx, oldKeys.meta, "closed", now.Format(time.RFC3339Nano)) }, nil
	})
}

// AbortRebuild gives up the rebuild in progress: its version is closed
// and dropped by the replicas at once; the live version is untouched. It
// returns the aborted rebuild, or [ErrNoRebuild].
func (s *Store) AbortRebuild(ctx context.Context, projection, by string) (controlplane.Rebuild, error) {
	var aborted controlplane.Rebuild
	_, err := s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		if v.Building == nil {
			return nil, fmt.Errorf("%w: %s has no rebuild to abort", ErrNoRebuild, projection)
		}
		now := time.Now().UTC()
		aborted = *v.Building
		aborted.EndedAt, aborted.Outcome = now, "aborted by "+by
		v.Building = nil
		v.Retiring = append(v.Retiring, controlplane.Retiring{Version: aborted.Version, RetireAt: now, Why: "aborted by " + by})
		v.History = prependHistory(v.History, aborted)
		k, err := s.keysFor(framework.VersionedName(projection, aborted.Version))
		if err != nil {
			return nil, err
		}
		return func(p redis.Pipeliner) { p.HSet(ctx, k.meta, "closed", now.Format(time.RFC3339Nano)) }, nil
	})
	return aborted, err
}

// RetireNow makes a retiring version due for deletion at once (also one
// kept with --keep).
func (s *Store) RetireNow(ctx context.Context, projection string, version uint64) error {
	_, err := s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		i := slices.IndexFunc(v.Retiring, func(r controlplane.Retiring) bool { return r.Version == version })
		if i < 0 {
			return nil, fmt.Errorf("redischeckpoint: %s@v%d is not a retired version (live v%d)", projection, version, v.Live)
		}
		v.Retiring[i].RetireAt, v.Retiring[i].Keep = time.Now().UTC(), false
		return nil, nil
	})
	return err
}

func prependHistory(h []controlplane.Rebuild, r controlplane.Rebuild) []controlplane.Rebuild {
	h = append([]controlplane.Rebuild{r}, h...)
	if len(h) > historyKept {
		h = h[:historyKept]
	}
	return h
}

// DropVersion deletes every key of a retired version (closed, neither live
// nor building) and removes it from the registry; its closed meta stays as
// a tombstone, so that a replica still running it cannot take a fence and
// write there again. Deleting a version twice is harmless.
func (s *Store) DropVersion(ctx context.Context, projection string, version uint64) error {
	v, err := s.Versions(ctx, projection)
	if err != nil {
		return err
	}
	if version == v.Live || (v.Building != nil && v.Building.Version == version) {
		return fmt.Errorf("redischeckpoint: %s@v%d is live or building; it cannot be dropped", projection, version)
	}
	k, err := s.keysFor(framework.VersionedName(projection, version))
	if err != nil {
		return err
	}
	closed, err := s.client.HGet(ctx, k.meta, "closed").Result()
	if isNil(err) {
		return fmt.Errorf("redischeckpoint: %s@v%d is not closed; it cannot be dropped", projection, version)
	}
	if err != nil {
		return fmt.Errorf("redischeckpoint: drop %s@v%d: %w", projection, version, err)
	}
	patterns := []string{globEscape(k.base) + "*"}
	if version == 0 {
		// The unversioned layout shares its prefix with the registry
		// and the other versions: only its own keys go.
		patterns = []string{globEscape(k.base) + "rm:*", globEscape(k.base) + "reset-claim:*"}
	}
	for _, pattern := range patterns {
		if err := s.unlinkMatching(ctx, pattern, k.meta); err != nil {
			return fmt.Errorf("redischeckpoint: drop %s@v%d: %w", projection, version, err)
		}
	}
	own := append(k.list()[1:], k.base+"replicas")
	if err := s.client.Unlink(ctx, own...).Err(); err != nil {
		return fmt.Errorf("redischeckpoint: drop %s@v%d: %w", projection, version, err)
	}
	// The tombstone: only "closed" stays in the meta hash.
	pipe := s.client.TxPipeline()
	pipe.Unlink(ctx, k.meta)
	pipe.HSet(ctx, k.meta, "closed", closed, "dropped_at", time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redischeckpoint: drop %s@v%d: %w", projection, version, err)
	}
	_, err = s.updateVersions(ctx, projection, func(v *controlplane.Versions) (func(redis.Pipeliner), error) {
		v.Retiring = slices.DeleteFunc(v.Retiring, func(r controlplane.Retiring) bool { return r.Version == version })
		return nil, nil
	})
	return err
}

// unlinkMatching deletes the keys matching pattern (but not except), found
// with SCAN on every master of a Cluster.
func (s *Store) unlinkMatching(ctx context.Context, pattern, except string) error {
	unlink := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			if iter.Val() != except {
				batch = append(batch, iter.Val())
			}
			if len(batch) == 500 {
				if err := c.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if len(batch) > 0 {
			return c.Unlink(ctx, batch...).Err()
		}
		return nil
	}
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		return cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return unlink(ctx, c) })
	}
	return unlink(ctx, s.client)
}

// Version returns the projection's version named name ("billing@v3", or
// "billing" for version 0), with the same ApplyFunc: a replica runs one
// per version it builds or keeps live, and a reader reads the one
// [AtomicProjection.Live] names.
func (p *AtomicProjection) Version(name string) (*AtomicProjection, error) {
	if base, _ := framework.SplitVersionedName(name); base != p.Base() {
		return nil, fmt.Errorf("redischeckpoint: %q is not a version of projection %s", name, p.Base())
	}
	return p.store.NewAtomicProjection(name, p.apply)
}

// Base returns the projection's name without its version.
func (p *AtomicProjection) Base() string {
	base, _ := framework.SplitVersionedName(p.keys.name)
	return base
}

// Live returns the projection's live version (see [Store.Live]): queries
// resolve it once and read its keys.
func (p *AtomicProjection) Live(ctx context.Context) (*AtomicProjection, error) {
	name, err := p.store.Live(ctx, p.Base())
	if err != nil {
		return nil, err
	}
	if name == p.keys.name {
		return p, nil
	}
	return p.Version(name)
}

// readCursorHash reads a cursors hash whole.
func readCursorHash(ctx context.Context, c redis.Cmdable, key string) (map[string]uint64, error) {
	raw, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: read %s: %w", key, err)
	}
	out := make(map[string]uint64, len(raw))
	for field, value := range raw {
		seq, err := parseCursor(key, field, value)
		if err != nil {
			return nil, err
		}
		out[field] = seq
	}
	return out, nil
}
