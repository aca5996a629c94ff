package kafkarunner_test

import (
	"os"
	"testing"

	"github.com/projector-dev/projector/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(envReplica) == "1" {
		os.Exit(replicaMain())
	}
	testenv.Main(m)
}
