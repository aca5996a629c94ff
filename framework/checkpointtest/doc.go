// Package checkpointtest is the conformance suite for
// [framework.ProjectionCheckpointStore] implementations: one call runs every
// case.
//
//	func TestConformance(t *testing.T) {
//		checkpointtest.Run(t, func(t *testing.T) framework.ProjectionCheckpointStore {
//			return newStoreForTest(t)
//		})
//	}
//
// The factory is called once per case and must return an empty store that
// no other case sees; cases run in parallel.
package checkpointtest
