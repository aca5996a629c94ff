// Package testenv gives tests a Kafka cluster and a Redis server, real ones whenever they can
// be had.
//
// [Kafka] and [Redis] look in this order:
//
//  1. Environment variables: PROJECTOR_KAFKA_SEEDS (comma-separated host:port) and
//     PROJECTOR_REDIS_ADDR (host:port). scripts/test.sh and scripts/infra.sh set them for a
//     real Apache Kafka broker and a real Redis server they run on this machine. A server named
//     there that does not answer fails the test.
//  2. testcontainers-go, when a Docker engine is healthy: an apache/kafka container (image from
//     PROJECTOR_KAFKA_IMAGE) and a redis container (PROJECTOR_REDIS_IMAGE). Set
//     PROJECTOR_TESTENV_NO_DOCKER=1 to skip this step.
//  3. In-process fakes: franz-go's kfake and miniredis. The test log says so with a banner,
//     because a fake is never evidence that something works against Kafka or Redis.
//
// With PROJECTOR_REQUIRE_REAL=1 (the test command and CI set it) or CI=true, step 3 is a test
// failure that says how to run scripts/test.sh, not a silent downgrade.
//
// Each source is set up once per test binary and shared by every test in it. Tests isolate
// themselves by name: [KafkaEnv.Topic] creates a topic unique to the test and deletes it when
// the test ends, [RedisEnv.Prefix] gives a unique key prefix whose keys are deleted when the
// test ends. So tests can run in parallel, and the suite can run twice against the same
// servers. A package whose tests use testenv should call [Main] from TestMain so that
// containers and fakes are stopped when its tests are done.
package testenv
