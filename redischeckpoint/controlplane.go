package redischeckpoint

import "github.com/projector-dev/projector/controlplane"

// Store is a complete control-plane backend: the compiler checks each
// interface here, so a signature that drifts fails the build instead of
// turning a capability off.
var (
	_ controlplane.CheckpointStore = (*Store)(nil)
	_ controlplane.Fencer          = (*Store)(nil)
	_ controlplane.ProgressStore   = (*Store)(nil)
	_ controlplane.HeadStore       = (*Store)(nil)
	_ controlplane.ServerChecker   = (*Store)(nil)
	_ controlplane.ParkStore       = (*Store)(nil)
	_ controlplane.ControlStore    = (*Store)(nil)
	_ controlplane.Pinger          = (*Store)(nil)
	_ controlplane.Admin           = (*Store)(nil)
)
