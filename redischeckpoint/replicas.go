package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replicated checkpoints (Config.WaitReplicas).
//
// Redis replicates asynchronously: a master acknowledges a write before
// any replica has it, and a failover to a replica loses what the replica
// had not received. Losing a read-model write or a cursor is harmless as
// long as no Kafka offset was committed over it (the runner notices the
// loss and reads those records again); losing the checkpoint an offset
// commit relied on stops the partition as state-lost until a replay.
//
// With WaitReplicas N the writes the runner commits offsets after (the
// checkpoint of [Store.AdvancePartition], the cursors of [Store.Advance])
// and fences ([Store.AcquireFence]) are followed by WAIT N on the same
// connection, in the same round trip: Redis answers how many replicas
// acknowledged the replication stream up to that write. Redis replicates
// one ordered stream per master and one projection's keys live on one
// master, so every write made before the checkpoint (the apply scripts on
// other pooled connections, parks, resolutions) is covered too.

// ErrNotReplicated reports a checkpoint (or fence) that Redis stored on the
// master but fewer than Config.WaitReplicas replicas acknowledged within
// Config.WaitTimeout: it may be lost by a failover, so the runner commits
// no offset over it and retries. See [NotReplicatedError].
var ErrNotReplicated = errors.New("redischeckpoint: write not acknowledged by enough replicas")

// NotReplicatedError is a write the master stored and fewer than Wanted
// replicas acknowledged within Timeout (Redis's WAIT answered Acked). The
// write is not undone: retrying it is safe (scripts skip what they already
// did), and nothing must be committed on it until a retry succeeds. It
// matches [ErrNotReplicated].
type NotReplicatedError struct {
	Projection string
	// Write names what was written: "the checkpoint of partition 3",
	// "the cursors", "the fence of partition 3".
	Write   string
	Acked   int64
	Wanted  int
	Timeout time.Duration
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s: %s reached %d of %d replicas within %s (WAIT): stored on the master only, a failover could lose it; not committed, retry",
		e.Projection, e.Write, e.Acked, e.Wanted, e.Timeout)
}

// Is matches [ErrNotReplicated].
func (e *NotReplicatedError) Is(target error) bool { return target == ErrNotReplicated }

// DefaultWaitTimeout is the default of [Config.WaitTimeout] when
// Config.WaitReplicas is set.
const DefaultWaitTimeout = time.Second

// validateWait reports the problems of the replication settings of c.
func (c Config) validateWait() []error {
	var errs []error
	if c.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.WaitReplicas %d is negative", c.WaitReplicas))
	}
	if c.WaitTimeout < 0 {
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.WaitTimeout %s is negative", c.WaitTimeout))
	}
	if c.WaitReplicas <= 0 || c.Client == nil {
		return errs
	}
	timeout := c.WaitTimeout
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	var read time.Duration
	switch cl := c.Client.(type) {
	case *redis.Client:
		read = cl.Options().ReadTimeout
	case *redis.ClusterClient:
		read = cl.Options().ReadTimeout
	default:
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.WaitReplicas needs a *redis.Client (one server or Sentinel) or a *redis.ClusterClient, not %T: WAIT must reach the master that holds the projection", c.Client))
	}
	// WAIT blocks the reply for up to the timeout: a client read timeout
	// shorter than that would turn every stalled replica into a timed-out
	// command that go-redis retries.
	if read > 0 && timeout >= read {
		errs = append(errs, fmt.Errorf("redischeckpoint: Config.WaitTimeout %s must be below the client's read timeout %s", timeout, read))
	}
	return errs
}

// runReplicated is [Store.run] for the writes the runner commits offsets
// after: with Config.WaitReplicas set, the script and WAIT go in one
// pipeline on one connection to the projection's master, and a script that
// succeeded but was not acknowledged by enough replicas returns a
// [*NotReplicatedError]. The guard's bookkeeping and the translation of the
// script's error replies are those of run. what names the write for the
// error.
func (s *Store) runReplicated(ctx context.Context, k keys, script *redis.Script, args []any, streams []string, what string) (any, error) {
	if s.cfg.WaitReplicas == 0 {
		return s.run(ctx, k, script, args, streams)
	}
	g, err := s.guardFor(ctx, k.name)
	if err != nil {
		return nil, err
	}
	res, waitErr, err := s.evalAndWait(ctx, k, script, append(g.args, args...), what)
	res = g.done(res, err)
	if err != nil {
		return nil, s.scriptError(ctx, k, err, streams)
	}
	if waitErr != nil {
		return nil, waitErr
	}
	return res, nil
}

// evalAndWait runs script with the projection's keys and args and, when
// Config.WaitReplicas is set, WAIT on the same connection. err is the
// script's error as go-redis returned it (as script.Run would); waitErr,
// only when the script succeeded, is a [*NotReplicatedError] or the
// failure of the WAIT itself.
func (s *Store) evalAndWait(ctx context.Context, k keys, script *redis.Script, args []any, what string) (res any, waitErr, err error) {
	// All of a projection's keys share one hash slot.
	return s.evalWaiting(ctx, k.list(), k.meta, k.name, "projection "+k.name, script, args, what)
}

// evalWaiting runs script with keys and args and, when Config.WaitReplicas
// is set, WAIT on the same connection, in one round trip: on a Cluster,
// the connection of the master of slotKey's slot (every key must share
// it). name is the Projection of a [*NotReplicatedError], label what an
// error says was written to. See [Store.evalAndWait] for the results.
func (s *Store) evalWaiting(ctx context.Context, keys []string, slotKey, name, label string, script *redis.Script, args []any, what string) (res any, waitErr, err error) {
	if s.cfg.WaitReplicas == 0 {
		res, err = script.Run(ctx, s.client, keys, args...).Result()
		return res, nil, err
	}
	var (
		node    redis.Cmdable = s.client
		cluster *redis.ClusterClient
	)
	if c, ok := s.client.(*redis.ClusterClient); ok {
		// WAIT must run on the connection of the slot's master.
		m, err := c.MasterForKey(ctx, slotKey)
		if err != nil {
			return nil, nil, fmt.Errorf("the master of %s: %w", slotKey, err)
		}
		node, cluster = m, c
	}
	// WAIT's timeout is in milliseconds, and 0 would block for ever.
	ms := max(s.cfg.WaitTimeout.Milliseconds(), 1)
	var eval, wait *redis.Cmd
	for _, sha := range []bool{true, false} {
		pipe := node.Pipeline()
		if sha {
			eval = script.EvalSha(ctx, pipe, keys, args...)
		} else {
			// NOSCRIPT: the script did not run; send its source.
			eval = script.Eval(ctx, pipe, keys, args...)
		}
		wait = pipe.Do(ctx, "WAIT", s.cfg.WaitReplicas, ms)
		_, _ = pipe.Exec(ctx)
		if !sha || !isNoScript(eval.Err()) {
			break
		}
	}
	res, err = eval.Result()
	if err != nil {
		if cluster != nil && (hasReplyPrefix(err, "MOVED ") || hasReplyPrefix(err, "ASK ") || hasReplyPrefix(err, "CLUSTERDOWN ")) {
			// The slot moved: a node client does not follow redirections,
			// so refresh the slot map for the retry.
			cluster.ReloadState(ctx)
		}
		// The script failed: its outcome is the answer, whatever WAIT
		// said.
		return nil, nil, err
	}
	acked, werr := wait.Int64()
	if werr != nil {
		return res, fmt.Errorf("redischeckpoint: %s: %s was written, WAIT %d failed: %w", label, what, s.cfg.WaitReplicas, werr), nil
	}
	if acked < int64(s.cfg.WaitReplicas) {
		return res, &NotReplicatedError{Projection: name, Write: what, Acked: acked, Wanted: s.cfg.WaitReplicas, Timeout: s.cfg.WaitTimeout}, nil
	}
	return res, nil, nil
}

func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}

// replicationWarning returns a warning when the master whose INFO fields
// are given has fewer connected replicas than Config.WaitReplicas.
func (s *Store) replicationWarning(fields map[string]string, addr string) string {
	if s.cfg.WaitReplicas == 0 {
		return ""
	}
	raw, ok := fields["connected_slaves"]
	if !ok {
		return "redischeckpoint: cannot check the number of replicas of the Redis server" + addr + ": INFO does not show it"
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n >= s.cfg.WaitReplicas {
		return ""
	}
	return fmt.Sprintf("redischeckpoint: the Redis server%s has %d connected replicas, fewer than Config.WaitReplicas %d: "+
		"checkpoints fail with ErrNotReplicated and no offset is committed until enough replicas are connected", addr, n, s.cfg.WaitReplicas)
}

// partitionWrite names a fenced write of partition for errors.
func partitionWrite(what string, partition int32) string {
	return what + " of partition " + strconv.FormatInt(int64(partition), 10)
}

// stringSlice is a script's reply as strings, as (*redis.Cmd).StringSlice
// makes it.
func stringSlice(v any, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %v (%T)", v, v)
	}
	out := make([]string, len(items))
	for i, item := range items {
		str, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("unexpected reply %v", v)
		}
		out[i] = str
	}
	return out, nil
}

// waitOn runs WAIT on c, the connection that just wrote (a transaction's),
// and returns a [*NotReplicatedError] when fewer than Config.WaitReplicas
// replicas acknowledged within Config.WaitTimeout.
func (s *Store) waitOn(ctx context.Context, c interface {
	Do(context.Context, ...any) *redis.Cmd
}, projection, what string) error {
	ms := max(s.cfg.WaitTimeout.Milliseconds(), 1)
	acked, err := c.Do(ctx, "WAIT", s.cfg.WaitReplicas, ms).Int64()
	if err != nil {
		return fmt.Errorf("redischeckpoint: projection %s: %s was written, WAIT %d failed: %w", projection, what, s.cfg.WaitReplicas, err)
	}
	if acked < int64(s.cfg.WaitReplicas) {
		return &NotReplicatedError{Projection: projection, Write: what, Acked: acked, Wanted: s.cfg.WaitReplicas, Timeout: s.cfg.WaitTimeout}
	}
	return nil
}
