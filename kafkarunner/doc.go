// Package kafkarunner runs a projection over a Kafka topic written by
// package kafkastore, as a consumer group: each [Runner] is one replica,
// with one worker goroutine per partition it owns. Start as many replicas
// as there are partitions at most; extra ones wait as hot standbys.
//
// The runner keeps the delivery contract per stream: events apply in
// sequence order, each exactly once in effect, and none is skipped, lost or
// stalled silently. It classifies and applies events with the rules shared
// with framework.ProjectionRunner ([framework.Classify],
// [framework.ApplyEvents]):
//
//   - a duplicate (a sequence at or below the stream's cursor) is skipped
//     when it repeats the event applied there, and parks the stream as a
//     conflict when it is another event;
//   - a gap (a sequence beyond the cursor plus one) parks the stream;
//   - an apply error is retried with backoff ([RetryPolicy]) unless it is
//     permanent ([framework.ErrPermanent], [Config.Retryable]), then the
//     stream parks; a panic is recovered and treated as an error;
//   - a parked stream's later records are held until an admin retries or
//     skips it ([Resolver], projectorctl parked), and a copy of the event
//     goes to the dead-letter topic;
//   - cursors, and the partition's progress, are stored before the offset
//     is committed, so a crash between the two repeats nothing in effect.
//
// What is not in Kafka (fences, cursors, progress, parked streams, pause,
// replays) is the control plane, reached through the interfaces of package
// controlplane: redischeckpoint.Store implements all of them, memcontrol
// keeps them in memory. [New] refuses a configuration without fencing,
// progress tracking or a parking store unless [Config.SingleReplica]; the
// runner logs the [Capabilities] it found.
//
// [VersionedRunner] runs every read-model version of a projection
// (blue/green rebuilds). Hooks ([Hook]) observe applied, skipped and
// parked events.
package kafkarunner
