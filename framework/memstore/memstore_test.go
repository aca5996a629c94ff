package memstore_test

import (
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/checkpointtest"
	"github.com/projector-dev/projector/framework/eventstoretest"
	"github.com/projector-dev/projector/framework/memstore"
)

func TestEventStoreConformance(t *testing.T) {
	eventstoretest.Run(t, func(*testing.T) framework.EventStore { return memstore.NewEventStore() })
}

func TestCheckpointStoreConformance(t *testing.T) {
	checkpointtest.Run(t, func(*testing.T) framework.ProjectionCheckpointStore { return memstore.NewCheckpointStore() })
}
