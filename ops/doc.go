// Package ops is Projector's operations as a library: what an operator does
// to a projection while its replicas run, as Go functions with typed inputs
// and results. projectorctl is flags and printing on top of it; an API's
// status endpoint and tests call it directly.
//
//   - [Client.Status]: one status model ([Status]) — consumer-group members,
//     lag per partition ([GroupLag], on kadm's group lag), the control
//     state, parked streams, read-model versions, the replicas' reports,
//     problems and warnings.
//   - [Client.Pause], [Client.Resume], [Client.WaitEmpty],
//     [Client.WaitMembers].
//   - Replays in place: [Client.PlanReplay], [Client.Replay],
//     [Client.ResumeReplay], [Client.AbortReplay], to a typed
//     [ReplayTarget] ([FromStart], [FromTime], [FromOffsets];
//     [ParseReplayTarget] reads the form stored in
//     controlplane.Replay.To). Each phase is recorded before it starts, so
//     an interrupted replay is resumed or aborted, never left half done.
//   - Rebuilds beside the live version: [Client.PlanRebuild],
//     [Client.StartRebuild], [Client.FollowRebuild],
//     [Client.RebuildStatus], [Client.AbortRebuild], [Client.DropVersion].
//   - Parked streams: [Client.Parked], [Client.ParkedRecord] (the record
//     a stream stopped at, read from Kafka), [Client.Resolve] (a retry or
//     skip, checked against Kafka by kafkarunner.Resolver).
//
// A projection is named as the replicas name it: "billing" is its live
// version, "billing@v3" a version by number ([Client.Projection]).
//
// The package talks to the control plane only through
// controlplane.Admin (package redischeckpoint implements it) and to Kafka
// through kadm. It prints nothing: long operations report their steps
// through a callback ([ReplayEvent], [RebuildEvent]). Errors an operator
// must act on match [ErrRefused], [ErrNotFound] or [ErrInvalid] with
// errors.Is; their messages say what to do.
package ops
