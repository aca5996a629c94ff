package kafkarunner_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/internal/testenv"
)

func redisFor(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	return testenv.Redis(tb).Client
}

func ptr(s string) *string { return &s }

var payload = []byte(`{"malo":"51238696788","day":"2026-03-29","unit":"Wh","values":[1200,1180,1175,1190,1201,1188,1179,1203]}`)
