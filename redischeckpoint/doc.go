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
//     fails with a [*FencedError] ([ErrFenced]) and writes nothing.
//   - Epochs. [Store.BumpEpoch] starts a new generation of the projection
//     (a replay): it drops the cursors in the same script, and fences of the
//     older epoch are stale from then on.
//   - Atomic read models. [AtomicProjection] runs a projection's Redis
//     writes, its cursor updates and the fence check in one script per
//     batch, skipping events at or below their cursor, so a batch applied
//     twice (after a crash between applying and committing offsets) counts
//     once.
//
// # Key layout
//
// Every key of one projection carries the projection's name as a Redis
// Cluster hash tag, so they share one slot and scripts and transactions work
// on Cluster. With the default namespace "projector" and the projection
// "billing":
//
//	projector:{billing}:meta      hash: epoch (replay generation, absent = 0),
//	                              saved (1 while a checkpoint is stored)
//	projector:{billing}:cursors   hash: stream ID -> last applied sequence (decimal)
//	projector:{billing}:event-ids hash: stream ID -> "<sequence> <event ID>" of the
//	                              last event an AtomicProjection applied (conflicts)
//	projector:{billing}:fences    hash: partition -> newest fencing token
//	projector:{billing}:rm:...    the read model of an AtomicProjection
//
// Projection names are limited to [A-Za-z0-9._-] (see
// [framework.ValidateProjectionName]) so that the hash tag is exact. An ACL
// user for one projection needs the key pattern "projector:{billing}:*"
// and the commands EVAL, EVALSHA, HGET, HMGET, HSCAN, HSET, UNLINK, SCAN,
// MULTI, EXEC and PING.
//
// # Connecting
//
// [NewClient] builds a client from a [ClientConfig]: an address list or a
// redis:// or rediss:// URL, an ACL username and password, TLS, and
// timeouts that make a wrong password or an unreachable server a prompt,
// clear error instead of a hang.
package redischeckpoint
