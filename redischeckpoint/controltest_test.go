package redischeckpoint_test

import (
	"testing"

	"github.com/projector-dev/projector/controlplane/controltest"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestControlPlaneConformance runs the control-plane conformance suite on
// the test binary's Redis (real under scripts/test.sh, see
// internal/testenv), each case in a namespace of its own. On the
// in-process fake, whose keys expire only when its clock is moved, the
// case that waits for a reset claim's ttl is skipped.
func TestControlPlaneConformance(t *testing.T) {
	env := testenv.Redis(t)
	controltest.RunWith(t, func(t *testing.T) controltest.Store {
		s, _, _ := newStore(t, redischeckpoint.Config{})
		return s
	}, controltest.Options{FrozenClock: !env.Real})
}
