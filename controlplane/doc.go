// Package controlplane is the control plane of Projector's Kafka runner:
// the types and the small interfaces through which replicas of a
// projection, and the admin tools beside them, share what is not in Kafka.
//
//   - Fencing: a [Fence] per (projection, partition, epoch); writes made
//     with [WithFence] fail with [ErrFenced] once a newer fence exists, so
//     a replica that lost its partition (a zombie) cannot write.
//   - Cursors and progress: [CheckpointStore], [HeadStore] and
//     [ProgressStore] let a runner tell a redelivery from a conflict and a
//     restart from lost state ([ErrStateLost]).
//   - Parking: [ParkStore] keeps the streams stopped at an event
//     ([ParkedStream]) and the admins' [Resolution]s of them, with an
//     audit.
//   - Control: [ControlStore] carries pause and resume, the epoch and
//     reset of a replay ([Replay], [ResetClaim]) and the replicas'
//     reports ([ReplicaInfo]); [Versions] and [Rebuild] describe
//     blue/green rebuilds.
//   - [Admin] is what admin tools need of a backend.
//
// Package redischeckpoint implements every interface on Redis; package
// memcontrol implements them in memory, for tests and demos. Package
// controltest is the conformance suite a backend must pass.
//
// The package imports only the standard library and package framework.
package controlplane
