// Package eventstoretest is the conformance suite for
// [framework.EventStore] implementations: one call runs every case.
//
//	func TestConformance(t *testing.T) {
//		eventstoretest.Run(t, func(t *testing.T) framework.EventStore {
//			return newStoreForTest(t)
//		})
//	}
//
// The factory is called once per case and must return an empty store that
// no other case sees (a fresh topic, a fresh key prefix); cases run in
// parallel. The suite covers appends with expected versions, reads after a
// sequence, listing by prefix, and the original specification's runner
// scenarios (full replay, incremental catch-up, several streams, catch-up
// across streams) against the store.
package eventstoretest
