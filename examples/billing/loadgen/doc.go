// Package loadgen generates a deterministic billing month for the billing
// example: N MaLos spread over a few suppliers and balance groups, with
// substitute values, corrections, mid-month supplier changes, a few
// retroactive assignment changes and clearing cases. It appends every
// MaLo's stream through a framework.EventStore (kafkastore.Store in real
// use, framework/memstore in tests) and computes, independently of the
// projection, what the read model must hold: [Expected].
//
// The same Config (with the same Seed) always yields the same events and
// the same expected totals, whatever the concurrency.
package loadgen
