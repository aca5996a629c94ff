package appendguard_test

import (
	"testing"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/appendguard/guardtest"
)

func TestMemory(t *testing.T) {
	guardtest.Run(t, func(*testing.T) appendguard.Registry { return appendguard.NewMemory() })
}
