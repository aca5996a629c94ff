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
//     [controlplane.Fence] ([controlplane.WithFence]) is checked in the same
//     script against the newest token and the current epoch; a stale one
//     fails with a [*FencedError] ([ErrFenced], [controlplane.ErrFenced]) and
//     writes nothing. That covers cursors, read-model writes, parks and
//     partition progress.
//   - Lost writes. Every fenced write also checks and raises the
//     partition's write serial, as its first write. The Store that acquired
//     the fence knows how many writes it made; a Redis that holds fewer (a
//     restart without persistence, a failover to a replica that missed
//     writes, a flush), or a fence that went back in time, refuses the
//     write with a [*StateLostError] ([ErrStateLost],
//     [controlplane.ErrStateLost]) before anything is written. A write whose
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
//     partition as the new epoch's progress; [Store.BeginReplay] does that
//     together with the pause and the request to reset the read model, in
//     one script: from then on fenced writes are refused (RESETPENDING,
//     [ResetPendingError]) until a replica has reset the model under its
//     claim ([controlplane.ResetClaim]), whose deletes are fenced by it.
//   - Versions. A read model lives under a version ("billing", "billing@v3",
//     see [framework.VersionedName]); [Store.StartRebuild],
//     [Store.SwitchLive], [Store.AbortRebuild] and [Store.DropVersion]
//     keep the registry and the live pointer that readers resolve
//     ([Store.Live], [AtomicProjection.Live]). A closed version (replaced
//     or abandoned) refuses fenced writes, fences and heartbeats
//     ([VersionClosedError]). [Store.WaitFor] waits until the live version
//     has applied a stream up to a sequence (read your writes).
//   - Atomic read models. [AtomicProjection] runs a projection's Redis
//     writes, its cursor updates and the fence check in one script per
//     batch, skipping events at or below their cursor, so a batch applied
//     twice (after a crash between applying and committing offsets) counts
//     once. Each event is applied whole with its cursor, or not at all:
//     see below.
//   - The server. [Store.CheckServer] refuses a Redis that may evict keys
//     (maxmemory-policy must be noeviction: an evicted key would silently
//     undo applied events) and warns when AOF persistence is off.
//
// # One event, all or nothing
//
// Redis does not roll back a script that fails half way, so the apply
// script checks every write of an event of several commands before it
// runs any of them (an event of one write that is one command, such as a
// single HIncrBy, runs it without checks: Redis runs a command whole or
// not at all, and its refusal is reported the same way),
// against the state as the batch's earlier events and the event's own
// earlier writes leave it: the key types (hash writes need none or hash,
// SAdd and SRem none or set, IncrBy none or a string; Set and Del take
// any), the stored integers HIncrBy, IncrBy, Replace and ReplaceFields add
// to (Redis's own parsing: no "+", no leading zeros, not "-0"), that every
// sum fits int64 (exact decimal arithmetic, also above 2^53), and that
// the ACL user may run each command on its key (Redis 7.0+). An event that
// fails a check is refused ([ErrWriteRefused]): the events before it are
// applied with their cursors and heads, in the same script, nothing of it
// is, and [AtomicProjection.ApplyBatch] returns how many events came
// before it and a [*WriteError] naming the stream, sequence, event ID,
// write, key, field and reason. Once the cause is fixed, the same batch
// applies the rest once. ReplacePacked (packed segments with their sums,
// see its documentation) reads what it replaces and the sums it adjusts
// inside the same checks; RefuseIfExists refuses an event while a guard
// key exists (a closed period).
//
// A batch is sent in scripts of at most 500 events and about 20,000
// changed fields and members, so that one script keeps Redis busy for tens
// of milliseconds (the billing example), not seconds; each script applies
// whole events, reads the cursors and heads of its streams in one HMGET
// each and writes them in one HSET each.
//
// Some mistakes are refused before anything is sent ([ErrInvalidWrite]):
// keys outside the read model, writes above the size limits, one key used
// as two types in one event without a Del or Set of it in between (see
// [Writes]). The limits: one write changes at most [MaxWriteValues]
// (10,000) fields or members, one event at most [MaxEventValues]
// (100,000); the script runs them in commands of at most 1000 values, far
// from Lua's unpack limit.
//
// Should a command the checks let through fail after earlier commands of
// its event ran (a bug of the checks: Redis refuses for lack of memory, on
// a read-only replica or after a disk error only up to a script's first
// write, which the checks come before), the script stores the cursors of
// the events before and ApplyBatch returns [ErrPartialWrite] (it matches
// [framework.ErrPartialApply]); the projection then refuses that stream
// until the process restarts, and the Kafka runner parks the stream for
// good without retrying: no retry adds the same writes twice. The read
// model needs a replay.
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
//	                               saved (1 while a checkpoint is stored), layout (the
//	                               key layout's version, [LayoutVersion]: a Store refuses
//	                               a newer one with a [*LayoutError])
//	projector:{billing}:cursors    hash: stream ID -> last applied sequence (decimal)
//	projector:{billing}:event-ids  hash: stream ID -> the event applied at the cursor,
//	                               "<sequence>@<partition>/<offset> <event ID>", the offset
//	                               the highest of the stream processed in that partition
//	                               ("<sequence> <event ID>" without a position)
//	projector:{billing}:fences     hash: partition -> newest fencing token
//	projector:{billing}:serials    hash: partition -> fenced writes made (write serial)
//	projector:{billing}:progress   hash: partition -> next offset the stored state covers
//	projector:{billing}:parked     hash: stream ID -> JSON controlplane.ParkedStream
//	projector:{billing}:resolving  hash: stream ID -> JSON controlplane.Resolution an admin
//	                               requested and the partition's worker has not carried out
//	projector:{billing}:resolutions list: JSON controlplane.Resolution carried out, newest first
//	projector:{billing}:control    hash: pause, replay and reset state
//	projector:{billing}:replicas   hash: replica ID -> JSON controlplane.ReplicaInfo
//	projector:{billing}:reset-claim:<epoch>  the replica resetting that epoch's model
//	projector:{billing}:rm:...     the read model of an AtomicProjection
//	projector:{billing}:versions   hash: live (the live version), state (JSON controlplane.Versions)
//	projector:{billing}:v3:...     every key above (but versions) of version 3, "billing@v3";
//	                               the unversioned keys are version 0
//
// Projection names are limited to [A-Za-z0-9._-] (see
// [framework.ValidateProjectionName]) so that the hash tag is exact. An ACL
// user for one projection needs the key pattern "projector:{billing}:*"
// and the commands EVAL, EVALSHA, HGET, HMGET, HGETALL, HSCAN, HSET, HDEL,
// LPUSH, LTRIM, LRANGE, SET, UNLINK, SCAN, MULTI, EXEC, PING, INFO and TIME
// (INFO for [Store.CheckServer]: without it the check is a warning; TIME
// keeps fencing tokens unique across a restore from an older snapshot:
// without it they are only increasing). An
// AtomicProjection's user needs TYPE as well, and the commands its writes
// run: HSET for HSet, Replace and ReplaceFields, HDEL, HINCRBY, SET, INCRBY
// and GET for IncrBy, DEL, SADD, SREM; BITFIELD, GETRANGE, SETRANGE,
// STRLEN, GET, SET, HMGET and HSET for ReplacePacked; EXISTS for
// RefuseIfExists. A write the user may not run refuses
// its event ([ErrWriteRefused], code NOPERM).
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
