// Package redischeckpoint keeps projection checkpoints, fencing tokens,
// epochs and Redis read models in Redis (go-redis v9, any
// [redis.UniversalClient]: single node, Sentinel or Cluster).
//
// [Store] implements [framework.ProjectionCheckpointStore] and passes
// framework/checkpointtest. On top of that it offers what makes "effect
// exactly once" hold when replicas crash, rebalance and come back:
//
//   - Cursors never regress. Advance raises only the cursors that moved,
//     atomically, in one round trip; batches above Config.ChunkSize cursors
//     are split into several scripts inside one MULTI/EXEC (a Lua unpack
//     fails near 8000 values). [Store.Cursors] looks up the cursors of a set
//     of streams in one round trip.
//   - Fencing. [Store.AcquireFence] hands out increasing tokens per
//     (projection, partition). Every write made with a context carrying a
//     [framework.Fence] ([framework.WithFence]) is checked in the same
//     script against the newest token and the current epoch; a stale one
//     fails with a [*FencedError] ([ErrFenced], [framework.ErrFenced]) and
//     writes nothing. That covers cursors, read-model writes, parks and
//     partition progress.
//   - Lost writes. Every fenced write also checks and raises the
//     partition's write serial, as its first write. The Store that acquired
//     the fence knows how many writes it made; a Redis that holds fewer (a
//     restart without persistence, a failover to a replica that missed
//     writes, a flush), or a fence that went back in time, refuses the
//     write with a [*StateLostError] ([ErrStateLost],
//     [framework.ErrStateLost]) before anything is written. A write whose
//     outcome is unknown (a timeout) widens what the next write accepts by
//     one. [Store.CheckState] checks without writing.
//   - Progress. [Store.AdvancePartition] stores a partition worker's
//     cursors, the events at them (heads) and the partition's progress (the
//     next offset the stored state covers) in one script; the Kafka runner
//     commits an offset only after it, and at each assignment compares the
//     committed offset with [Store.Progress] to find lost state.
//   - Epochs. [Store.BumpEpoch] starts a new generation of the projection
//     (a replay): it drops the cursors, heads and progress in the same
//     script, and fences of the older epoch are stale from then on.
//     [Store.BumpEpochAt] also records where the replay starts each
//     partition as the new epoch's progress.
//   - Atomic read models. [AtomicProjection] runs a projection's Redis
//     writes, its cursor updates and the fence check in one script per
//     batch, skipping events at or below their cursor, so a batch applied
//     twice (after a crash between applying and committing offsets) counts
//     once.
//   - The server. [Store.CheckServer] refuses a Redis that may evict keys
//     (maxmemory-policy must be noeviction: an evicted key would silently
//     undo applied events) and warns when AOF persistence is off.
//
// # Key layout
//
// Every key of one projection carries the projection's name as a Redis
// Cluster hash tag, so they share one slot (one master, one replication
// stream: Redis loses writes of a projection only as a suffix) and scripts
// and transactions work on Cluster. With the default namespace "projector"
// and the projection "billing":
//
//	projector:{billing}:meta       hash: epoch (replay generation, absent = 0),
//	                               saved (1 while a checkpoint is stored)
//	projector:{billing}:cursors    hash: stream ID -> last applied sequence (decimal)
//	projector:{billing}:event-ids  hash: stream ID -> the event applied at the cursor,
//	                               "<sequence>@<partition>/<offset> <event ID>"
//	                               ("<sequence> <event ID>" without a position)
//	projector:{billing}:fences     hash: partition -> newest fencing token
//	projector:{billing}:serials    hash: partition -> fenced writes made (write serial)
//	projector:{billing}:progress   hash: partition -> next offset the stored state covers
//	projector:{billing}:parked     hash: stream ID -> JSON framework.ParkedStream
//	projector:{billing}:resolutions list: JSON framework.Resolution, newest first
//	projector:{billing}:control    hash: pause, replay and reset state
//	projector:{billing}:replicas   hash: replica ID -> JSON framework.ReplicaInfo
//	projector:{billing}:rm:...     the read model of an AtomicProjection
//
// Projection names are limited to [A-Za-z0-9._-] (see
// [framework.ValidateProjectionName]) so that the hash tag is exact. An ACL
// user for one projection needs the key pattern "projector:{billing}:*"
// and the commands EVAL, EVALSHA, HGET, HMGET, HGETALL, HSCAN, HSET, HDEL,
// LPUSH, LTRIM, LRANGE, SET, UNLINK, SCAN, MULTI, EXEC, PING and INFO (INFO
// for [Store.CheckServer]; without it the check is a warning), plus the
// commands its read model's writes use.
//
// # Persistence
//
// The guarantees hold with any persistence: lost state is detected, never
// silently applied over. To keep running through a Redis restart instead of
// replaying, use appendonly yes with appendfsync always, and
// maxmemory-policy noeviction always. See docs/runner.md.
//
// # Connecting
//
// [NewClient] builds a client from a [ClientConfig]: an address list or a
// redis:// or rediss:// URL, an ACL username and password, TLS, and
// timeouts that make a wrong password or an unreachable server a prompt,
// clear error instead of a hang.
package redischeckpoint
