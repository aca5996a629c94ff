package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
)

// Config configures a [Store]. Zero fields mean their documented default.
type Config struct {
	// Client is the Redis connection (required). [NewClient] builds one
	// with sensible timeouts.
	Client redis.UniversalClient
	// Namespace prefixes every key. Default "projector".
	Namespace string
	// ChunkSize is the most cursors written by one script. Default 1000;
	// at most 3000 (a Lua unpack fails near 8000 values).
	ChunkSize int
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
}

// DefaultNamespace is the default of [Config.Namespace].
const DefaultNamespace = "projector"

const (
	defaultChunkSize = 1000
	maxChunkSize     = 3000
)

func (c *Config) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = defaultChunkSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("redischeckpoint: Config.Client is required"))
	}
	if c.ChunkSize < 0 || c.ChunkSize > maxChunkSize {
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.ChunkSize %d is outside 1..%d", c.ChunkSize, maxChunkSize))
	}
	if strings.ContainsAny(c.Namespace, "{}*?[] \t\r\n") {
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.Namespace %q holds a hash-tag, pattern or space character", c.Namespace))
	}
	return errors.Join(errs...)
}

// Store keeps checkpoints, fences and epochs in Redis. It is safe for
// concurrent use.
type Store struct {
	client redis.UniversalClient
	cfg    Config
}

var _ framework.ProjectionCheckpointStore = (*Store)(nil)

// New returns a Store, or the joined problems of cfg.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Store{client: cfg.Client, cfg: cfg}, nil
}

// keys are the keys of one projection.
type keys struct {
	name    string
	base    string // "projector:{billing}:"
	meta    string
	fences  string
	cursors string
	// eventIDs holds, per stream, "<sequence> <event ID>" of the last
	// event an AtomicProjection applied, to recognise a repeated sequence
	// with another event ID (a conflict) after restarts.
	eventIDs string
}

func (s *Store) keysFor(name string) (keys, error) {
	if err := framework.ValidateProjectionName(name); err != nil {
		return keys{}, err
	}
	base := s.cfg.Namespace + ":{" + name + "}:"
	return keys{name: name, base: base, meta: base + "meta", fences: base + "fences", cursors: base + "cursors", eventIDs: base + "event-ids"}, nil
}

func (k keys) list() []string { return []string{k.meta, k.fences, k.cursors, k.eventIDs} }

// fenceArgs returns the first three script arguments for the fence ctx
// carries, or unfenced ones.
func fenceArgs(ctx context.Context, name string) ([]any, error) {
	f, ok := framework.FenceFrom(ctx)
	if !ok {
		return []any{"", "", ""}, nil
	}
	if f.Projection != name {
		return nil, fmt.Errorf("redischeckpoint: a write to projection %s carries a fence of projection %s", name, f.Projection)
	}
	return []any{strconv.FormatInt(int64(f.Partition), 10), strconv.FormatUint(f.Epoch, 10), strconv.FormatUint(f.Token, 10)}, nil
}

// scriptError translates a script's error reply.
func (s *Store) scriptError(ctx context.Context, k keys, err error, streams []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "FENCED "):
		f, _ := framework.FenceFrom(ctx)
		fe := &FencedError{Projection: k.name, Partition: f.Partition, Held: f}
		if parts := strings.Fields(msg); len(parts) == 3 {
			fe.CurrentEpoch, _ = strconv.ParseUint(parts[1], 10, 64)
			fe.CurrentToken, _ = strconv.ParseUint(parts[2], 10, 64)
		}
		return fe
	case strings.HasPrefix(msg, "BADCURSOR "):
		i, _ := strconv.Atoi(strings.TrimPrefix(msg, "BADCURSOR "))
		if i < 1 || i > len(streams) {
			return fmt.Errorf("%w in %s: %s", ErrCorruptCursor, k.cursors, msg)
		}
		field := streams[i-1]
		value, _ := s.client.HGet(context.WithoutCancel(ctx), k.cursors, field).Result()
		return &CorruptCursorError{Key: k.cursors, Field: field, Value: value}
	}
	return fmt.Errorf("redischeckpoint: projection %s: %w", k.name, err)
}

// Load implements [framework.ProjectionCheckpointStore]. It reads the
// cursors with HSCAN, so a large checkpoint does not block the server.
func (s *Store) Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, err
	}
	cp := framework.NewGlobalProjectionCheckpoint()
	iter := s.client.HScan(ctx, k.cursors, 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		field := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		seq, err := parseCursor(k.cursors, field, iter.Val())
		if err != nil {
			return nil, err
		}
		cp.Advance(field, seq)
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("redischeckpoint: load %s: %w", k.cursors, err)
	}
	return cp, nil
}

func parseCursor(key, field, value string) (uint64, error) {
	seq, err := strconv.ParseUint(value, 10, 64)
	if err != nil {
		return 0, &CorruptCursorError{Key: key, Field: field, Value: value}
	}
	return seq, nil
}

// CursorsWithEventIDs is Cursors that also returns, for streams whose
// cursor was last moved by an AtomicProjection, the event ID applied at the
// cursor, in the same round trip. The Kafka runner uses it to recognise a
// conflicting event (same sequence, another ID) even after a restart.
func (s *Store) CursorsWithEventIDs(ctx context.Context, name string, streamIDs []string) (map[string]uint64, map[string]string, error) {
	return s.lookupCursors(ctx, name, streamIDs, true)
}

// Cursors returns the cursors of the given streams (0 for unknown streams)
// in one round trip.
func (s *Store) Cursors(ctx context.Context, name string, streamIDs []string) (map[string]uint64, error) {
	cursors, _, err := s.lookupCursors(ctx, name, streamIDs, false)
	return cursors, err
}

// lookupCursors reads the cursors (and, withIDs, the event IDs at them) in
// one pipeline of HMGETs, chunked.
func (s *Store) lookupCursors(ctx context.Context, name string, streamIDs []string, withIDs bool) (map[string]uint64, map[string]string, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, nil, err
	}
	cursors := make(map[string]uint64, len(streamIDs))
	ids := make(map[string]string)
	if len(streamIDs) == 0 {
		return cursors, ids, nil
	}
	pipe := s.client.Pipeline()
	var curCmds, idCmds []*redis.SliceCmd
	for chunk := range slices.Chunk(streamIDs, s.cfg.ChunkSize) {
		curCmds = append(curCmds, pipe.HMGet(ctx, k.cursors, chunk...))
		if withIDs {
			idCmds = append(idCmds, pipe.HMGet(ctx, k.eventIDs, chunk...))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("redischeckpoint: read cursors of %s: %w", k.cursors, err)
	}
	i := 0
	for c, cmd := range curCmds {
		var idVals []any
		if withIDs {
			idVals = idCmds[c].Val()
		}
		for j, v := range cmd.Val() {
			id := streamIDs[i]
			i++
			str, ok := v.(string)
			if !ok {
				cursors[id] = 0
				continue
			}
			seq, err := parseCursor(k.cursors, id, str)
			if err != nil {
				return nil, nil, err
			}
			cursors[id] = seq
			if j < len(idVals) {
				if last, ok := idVals[j].(string); ok {
					if at, eventID, ok := strings.Cut(last, " "); ok && at == str {
						ids[id] = eventID
					}
				}
			}
		}
	}
	return cursors, ids, nil
}

// Save implements [framework.ProjectionCheckpointStore]: it replaces the
// stored cursors with cp's in one transaction.
func (s *Store) Save(ctx context.Context, name string, cp *framework.GlobalProjectionCheckpoint) error {
	k, err := s.keysFor(name)
	if err != nil {
		return err
	}
	fence, err := fenceArgs(ctx, name)
	if err != nil {
		return err
	}
	var pairs []any
	for id, seq := range cp.All() {
		pairs = append(pairs, id, strconv.FormatUint(seq, 10))
	}
	var calls [][]any
	first := "1"
	for chunk := range slices.Chunk(pairs, 2*s.cfg.ChunkSize) {
		calls = append(calls, append(append(slices.Clone(fence), first), chunk...))
		first = "0"
	}
	if len(pairs) == 0 {
		calls = append(calls, append(fence, first))
	}
	return s.runScripts(ctx, k, saveScript, calls, nil)
}

// Advance implements [framework.ProjectionCheckpointStore]. All chunks run
// in one MULTI/EXEC, so the advance is atomic however large.
func (s *Store) Advance(ctx context.Context, name string, cursors map[string]uint64) error {
	k, err := s.keysFor(name)
	if err != nil {
		return err
	}
	if len(cursors) == 0 {
		return nil
	}
	fence, err := fenceArgs(ctx, name)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(cursors))
	for id := range cursors {
		if err := framework.ValidateStreamID(id); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if len(ids) > s.cfg.ChunkSize {
		slices.Sort(ids) // deterministic chunks
	}
	var calls [][]any
	var chunks [][]string
	for chunk := range slices.Chunk(ids, s.cfg.ChunkSize) {
		args := slices.Grow(slices.Clone(fence), 2*len(chunk))
		for _, id := range chunk {
			args = append(args, id, strconv.FormatUint(cursors[id], 10))
		}
		calls = append(calls, args)
		chunks = append(chunks, chunk)
	}
	return s.runScripts(ctx, k, advanceScript, calls, chunks)
}

// runScripts runs script once per argument list, atomically: a single call
// by EVALSHA, several inside one MULTI/EXEC. It translates the first script
// error; chunks[i] are the streams of call i, to name a bad cursor.
func (s *Store) runScripts(ctx context.Context, k keys, script *redis.Script, calls [][]any, chunks [][]string) error {
	if len(calls) == 1 {
		return s.scriptError(ctx, k, script.Run(ctx, s.client, k.list(), calls[0]...).Err(), chunkOr(chunks, 0))
	}
	for attempt := 0; ; attempt++ {
		pipe := s.client.TxPipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, args := range calls {
			cmds[i] = script.EvalSha(ctx, pipe, k.list(), args...)
		}
		_, execErr := pipe.Exec(ctx)
		if attempt == 0 && isNoScript(execErr, cmds) {
			// The server lost its script cache (a restart or SCRIPT
			// FLUSH): nothing ran. Load the script and try once more.
			if err := script.Load(ctx, s.client).Err(); err != nil {
				return fmt.Errorf("redischeckpoint: load script: %w", err)
			}
			continue
		}
		for i, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				return s.scriptError(ctx, k, err, chunkOr(chunks, i))
			}
		}
		if execErr != nil {
			return fmt.Errorf("redischeckpoint: projection %s: %w", k.name, execErr)
		}
		return nil
	}
}

func isNoScript(execErr error, cmds []*redis.Cmd) bool {
	if execErr != nil && strings.Contains(execErr.Error(), "NOSCRIPT") {
		return true
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

func chunkOr(chunks [][]string, i int) []string {
	if i < len(chunks) {
		return chunks[i]
	}
	return nil
}

// Delete implements [framework.ProjectionCheckpointStore]. The epoch and the
// fencing tokens stay, so tokens keep increasing across a delete.
func (s *Store) Delete(ctx context.Context, name string) error {
	k, err := s.keysFor(name)
	if err != nil {
		return err
	}
	fence, err := fenceArgs(ctx, name)
	if err != nil {
		return err
	}
	return s.scriptError(ctx, k, deleteScript.Run(ctx, s.client, k.list(), fence...).Err(), nil)
}

// Names implements [framework.ProjectionCheckpointStore]: the projections
// with a stored checkpoint, found by SCAN (on every master of a Cluster).
func (s *Store) Names(ctx context.Context) ([]string, error) {
	pattern := s.cfg.Namespace + ":{*}:meta"
	var metas []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			metas = append(metas, iter.Val())
		}
		return iter.Err()
	}
	var err error
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		var mu sync.Mutex // the callbacks run concurrently, one per master
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return nil, fmt.Errorf("redischeckpoint: scan %s: %w", pattern, err)
	}
	slices.Sort(metas)
	metas = slices.Compact(metas)
	pipe := s.client.Pipeline()
	saved := make([]*redis.BoolCmd, len(metas))
	for i, m := range metas {
		saved[i] = pipe.HExists(ctx, m, "saved")
	}
	if len(metas) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redischeckpoint: read checkpoint marks: %w", err)
		}
	}
	names := []string{}
	prefix := s.cfg.Namespace + ":{"
	for i, m := range metas {
		name := strings.TrimSuffix(strings.TrimPrefix(m, prefix), "}:meta")
		if saved[i].Val() && framework.ValidateProjectionName(name) == nil {
			names = append(names, name)
		}
	}
	return names, nil
}
