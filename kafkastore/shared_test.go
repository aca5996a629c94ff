package kafkastore_test

import "github.com/projector-dev/projector/internal/kafkatest"

// Helpers shared with the tests of kafkastore and kafkarunner.
var (
	ctxFor           = kafkatest.Ctx
	newStore         = kafkatest.NewStore
	newGuarded       = kafkatest.NewGuarded
	consumeFromStart = kafkatest.ConsumeFromStart
	saramaPartition  = kafkatest.SaramaPartition
	offHomeStream    = kafkatest.OffHomeStream
	contract         = kafkatest.Contract
	produceSarama    = kafkatest.ProduceSarama
	produceKafkaGo   = kafkatest.ProduceKafkaGo
	recordsOf        = kafkatest.RecordsOf
	produceFranz     = kafkatest.ProduceFranz
)

type placed = kafkatest.Placed
