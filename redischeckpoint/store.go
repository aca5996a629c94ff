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
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
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
	// WaitPoll is how often the watcher of [Store.WaitFor] checks the
	// awaited cursors, in one round trip for every waiter of a projection.
	// Default (zero or negative) [DefaultWaitPoll], 20 ms.
	WaitPoll time.Duration

	// WaitReplicas makes checkpoints survive a failover, as acks=all with
	// min.insync.replicas does for a Kafka producer. 0 (the default) is
	// off: Redis acknowledges a write before any replica has it, and a
	// failover (Sentinel promoting a replica) can lose the last
	// checkpoints; when an offset commit relied on one, the runner stops
	// the partition as state-lost until a replay.
	//
	// With WaitReplicas N, every checkpoint write that the runner commits
	// Kafka offsets after ([Store.AdvancePartition], and [Store.Advance]
	// for the unfenced path) and every [Store.AcquireFence] returns only
	// once Redis's WAIT N reports that at least N replicas acknowledged
	// it; otherwise it returns a [*NotReplicatedError] ([ErrNotReplicated],
	// naming how many of N acknowledged within WaitTimeout) and the runner
	// retries without committing. Redis replicates one ordered stream, so
	// everything written before the checkpoint (apply scripts on other
	// connections, parks) is on those replicas too. A replica that is down
	// or lagging stalls checkpoints and commits; it never loses them. Set
	// N to the replicas a failover may promote (Sentinel promotes the most
	// up-to-date one). Needs a *redis.Client or a *redis.ClusterClient.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default (zero) 1s when WaitReplicas is
	// set; it must be below the client's read timeout.
	WaitTimeout time.Duration
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
	if c.WaitPoll <= 0 {
		c.WaitPoll = DefaultWaitPoll
	}
	if c.WaitReplicas > 0 && c.WaitTimeout == 0 {
		c.WaitTimeout = DefaultWaitTimeout
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
	errs = append(errs, c.validateWait()...)
	return errors.Join(errs...)
}

// Store keeps checkpoints, fences and epochs in Redis. It is safe for
// concurrent use.
type Store struct {
	client redis.UniversalClient
	cfg    Config

	// sessions tracks, per (projection, partition), the newest fence this
	// Store acquired and the write serial its writes should find (see
	// [Store.AcquireFence]).
	sessionsMu sync.Mutex
	sessions   map[sessionKey]*session
}

var _ framework.ProjectionCheckpointStore = (*Store)(nil)

// New returns a Store, or the joined problems of cfg.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Store{client: cfg.Client, cfg: cfg, sessions: map[sessionKey]*session{}}, nil
}

// keys are the keys of one projection (of one version of it: see
// [framework.VersionedName]).
type keys struct {
	name string
	// base is "projector:{billing}:" for version 0 and
	// "projector:{billing}:v3:" for version 3: every version of a
	// projection shares its hash slot, beside the registry of versions.
	base    string
	version uint64
	meta    string
	fences  string
	cursors string
	// heads holds, per stream, the last event applied at the cursor:
	// "<sequence>@<partition>/<offset> <event ID>" (or "<sequence> <event
	// ID>" when its position is unknown), to recognise a repeated sequence
	// with another event ID (a conflict) after restarts. The offset is the
	// highest of the stream processed in that partition.
	heads string
	// serials counts, per partition, the fenced writes made to the
	// projection's state, to notice writes Redis lost.
	serials string
	// progress holds, per partition, the next offset the stored state
	// covers: the runner commits an offset only after raising it.
	progress string
	parked   string
	// resolving holds, per parked stream, the resolution an admin
	// requested and the partition's worker has not carried out yet.
	resolving   string
	resolutions string // the audit list of carried-out resolutions
	// control holds pause, reset and replay state (see control.go).
	control string
	// versions is the registry of the projection's versions, shared by
	// all of them: "projector:{billing}:versions".
	versions string
}

func (s *Store) keysFor(name string) (keys, error) {
	if err := framework.ValidateProjectionName(name); err != nil {
		return keys{}, err
	}
	bare, v := framework.SplitVersionedName(name)
	root := s.cfg.Namespace + ":{" + bare + "}:"
	base := root
	if v > 0 {
		base += "v" + strconv.FormatUint(v, 10) + ":"
	}
	return keys{name: name, base: base, version: v, meta: base + "meta", fences: base + "fences", cursors: base + "cursors",
		heads: base + "event-ids", serials: base + "serials", progress: base + "progress", parked: base + "parked",
		resolving: base + "resolving", resolutions: base + "resolutions", control: base + "control",
		versions: root + "versions"}, nil
}

func (k keys) list() []string {
	return []string{k.meta, k.fences, k.cursors, k.heads, k.serials, k.progress, k.parked, k.resolving, k.resolutions, k.control}
}

// scriptError translates a script's error reply.
func (s *Store) scriptError(ctx context.Context, k keys, err error, streams []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	f, _ := controlplane.FenceFrom(ctx)
	switch {
	case hasReplyPrefix(err, "FENCED "):
		fe := &FencedError{Projection: k.name, Partition: f.Partition, Held: f}
		if parts := strings.Fields(msg); len(parts) == 3 {
			fe.CurrentEpoch, _ = strconv.ParseUint(parts[1], 10, 64)
			fe.CurrentToken, _ = strconv.ParseUint(parts[2], 10, 64)
		}
		return fe
	case hasReplyPrefix(err, "CLOSED "):
		return &VersionClosedError{Projection: k.name, Partition: f.Partition}
	case hasReplyPrefix(err, "RESETPENDING "):
		epoch, _ := strconv.ParseUint(strings.TrimPrefix(msg, "RESETPENDING "), 10, 64)
		return &ResetPendingError{Projection: k.name, Partition: f.Partition, Epoch: epoch}
	case hasReplyPrefix(err, "STATELOST "):
		return &StateLostError{Projection: k.name, Partition: f.Partition, Detail: strings.TrimPrefix(msg, "STATELOST ")}
	case hasReplyPrefix(err, "BADCURSOR "):
		i, _ := strconv.Atoi(strings.TrimPrefix(msg, "BADCURSOR "))
		if i < 1 || i > len(streams) {
			return fmt.Errorf("%w in %s: %s", ErrCorruptCursor, k.cursors, msg)
		}
		field := streams[i-1]
		value, _ := s.client.HGet(context.WithoutCancel(ctx), k.cursors, field).Result()
		return &CorruptCursorError{Key: k.cursors, Field: field, Value: value}
	}
	if unavailable(err) {
		return &UnavailableError{Projection: k.name, Err: err}
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

// Heads returns the cursors of the given streams (absent for streams
// without one) and, where known, the event applied at each cursor: its ID
// and its position. The Kafka runner uses them to recognise an event that
// repeats an applied sequence with another event ID (a conflict), also
// after a restart. One round trip.
func (s *Store) Heads(ctx context.Context, name string, streamIDs []string) (map[string]controlplane.StreamHead, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, err
	}
	heads := make(map[string]controlplane.StreamHead, len(streamIDs))
	if len(streamIDs) == 0 {
		return heads, nil
	}
	pipe := s.client.Pipeline()
	var curCmds, headCmds []*redis.SliceCmd
	for chunk := range slices.Chunk(streamIDs, s.cfg.ChunkSize) {
		curCmds = append(curCmds, pipe.HMGet(ctx, k.cursors, chunk...))
		headCmds = append(headCmds, pipe.HMGet(ctx, k.heads, chunk...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redischeckpoint: read cursors of %s: %w", k.cursors, err)
	}
	i := 0
	for c, cmd := range curCmds {
		headVals := headCmds[c].Val()
		for j, v := range cmd.Val() {
			id := streamIDs[i]
			i++
			str, ok := v.(string)
			if !ok {
				continue
			}
			seq, err := parseCursor(k.cursors, id, str)
			if err != nil {
				return nil, err
			}
			h := controlplane.StreamHead{StreamID: id, Sequence: seq}
			if raw, ok := headVals[j].(string); ok {
				if at, eventID, pos, ok := parseHead(raw); ok && at == seq {
					h.EventID, h.Position = eventID, pos
				}
			}
			heads[id] = h
		}
	}
	return heads, nil
}

// formatHead is the stored form of a head: "<sequence>@<partition>/<offset>
// <event ID>", or "<sequence> <event ID>" without a position.
func formatHead(h controlplane.StreamHead) string {
	seq := strconv.FormatUint(h.Sequence, 10)
	if h.Position != nil {
		seq += "@" + strconv.FormatInt(int64(h.Position.Partition), 10) + "/" + strconv.FormatInt(h.Position.Offset, 10)
	}
	return seq + " " + h.EventID
}

func parseHead(raw string) (seq uint64, eventID string, pos *framework.Position, ok bool) {
	first, eventID, ok := strings.Cut(raw, " ")
	if !ok {
		return 0, "", nil, false
	}
	seqPart, at, hasPos := strings.Cut(first, "@")
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil {
		return 0, "", nil, false
	}
	if hasPos {
		ps, os, _ := strings.Cut(at, "/")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if err1 == nil && err2 == nil {
			pos = &framework.Position{Partition: int32(p), Offset: o}
		}
	}
	return seq, eventID, pos, true
}

// Cursors returns the cursors of the given streams (0 for unknown streams)
// in one round trip.
func (s *Store) Cursors(ctx context.Context, name string, streamIDs []string) (map[string]uint64, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, err
	}
	cursors := make(map[string]uint64, len(streamIDs))
	if len(streamIDs) == 0 {
		return cursors, nil
	}
	pipe := s.client.Pipeline()
	var cmds []*redis.SliceCmd
	for chunk := range slices.Chunk(streamIDs, s.cfg.ChunkSize) {
		cmds = append(cmds, pipe.HMGet(ctx, k.cursors, chunk...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redischeckpoint: read cursors of %s: %w", k.cursors, err)
	}
	i := 0
	for _, cmd := range cmds {
		for _, v := range cmd.Val() {
			id := streamIDs[i]
			i++
			cursors[id] = 0
			if str, ok := v.(string); ok {
				seq, err := parseCursor(k.cursors, id, str)
				if err != nil {
					return nil, err
				}
				cursors[id] = seq
			}
		}
	}
	return cursors, nil
}

// Save implements [framework.ProjectionCheckpointStore]: it replaces the
// stored cursors with cp's in one script.
func (s *Store) Save(ctx context.Context, name string, cp *framework.GlobalProjectionCheckpoint) error {
	k, err := s.keysFor(name)
	if err != nil {
		return err
	}
	args := []any{strconv.Itoa(s.cfg.ChunkSize)}
	for id, seq := range cp.All() {
		args = append(args, id, strconv.FormatUint(seq, 10))
	}
	_, err = s.run(ctx, k, saveScript, args, nil)
	return err
}

// Advance implements [framework.ProjectionCheckpointStore]: it raises the
// cursors that moved, atomically however many, in one script (which writes
// them in chunks of Config.ChunkSize). With Config.WaitReplicas set it
// returns only once enough replicas acknowledged it, else a
// [*NotReplicatedError].
func (s *Store) Advance(ctx context.Context, name string, cursors map[string]uint64) error {
	k, err := s.keysFor(name)
	if err != nil {
		return err
	}
	if len(cursors) == 0 {
		return nil
	}
	ids := make([]string, 0, len(cursors))
	for id := range cursors {
		if err := framework.ValidateStreamID(id); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	args := make([]any, 0, 1+2*len(ids))
	args = append(args, strconv.Itoa(s.cfg.ChunkSize))
	for _, id := range ids {
		args = append(args, id, strconv.FormatUint(cursors[id], 10))
	}
	_, err = s.runReplicated(ctx, k, advanceScript, args, ids, "the cursors")
	return err
}

// Delete implements [framework.ProjectionCheckpointStore]: it drops the
// cursors and the heads. The epoch, the fencing tokens, the write serials
// and the partitions' progress stay, so tokens keep increasing across a
// delete and a replay's progress baseline survives the reset of its read
// model. With a [controlplane.ResetClaim] in ctx (a replay's reset), it
// deletes only while the claim's holder holds the claim on that epoch's
// reset and the reset is not recorded as done; else it deletes nothing and
// returns a [*ResetClaimLostError].
func (s *Store) Delete(ctx context.Context, name string) error {
	claim, ok := controlplane.ResetClaimFrom(ctx)
	if !ok {
		k, err := s.keysFor(name)
		if err != nil {
			return err
		}
		_, err = s.run(ctx, k, deleteScript, nil, nil)
		return err
	}
	k, err := s.claimKeys(name, claim, 0)
	if err != nil {
		return err
	}
	g, err := s.guardFor(ctx, name)
	if err != nil {
		return err
	}
	args := append(append([]any{}, g.args...), claim.Holder, strconv.FormatUint(claim.Epoch, 10))
	reply, err := claimedDeleteScript.Run(ctx, s.client, append(k.list(), k.claim), args...).Result()
	g.done(reply, err)
	if hasReplyPrefix(err, "RESETCLAIM ") {
		return s.claimError(name, claim, "delete the cursors", err)
	}
	return s.scriptError(ctx, k.keys, err, nil)
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
