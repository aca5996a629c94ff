// Package memstore keeps events and checkpoints in memory: for tests, demos
// and the embedded default of the billing example. Nothing survives the
// process.
//
// [EventStore] enforces expected versions with real optimistic concurrency
// (one lock per store), and its ReadStream copies events out in small
// batches, so readers never hold the lock while the projection runs.
// [CheckpointStore] keeps named checkpoints. Both are safe for concurrent
// use and pass the conformance suites in framework/eventstoretest and
// framework/checkpointtest.
package memstore
