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
// The real broker of scripts/test.sh and scripts/infra.sh also has a SASL_SSL listener with
// SCRAM-SHA-256 and SCRAM-SHA-512 over TLS. Its address, SCRAM user and password and the PEM
// file of the throw-away CA that signed its certificate come in PROJECTOR_KAFKA_SASL_SSL_SEEDS,
// PROJECTOR_KAFKA_SCRAM_USER, PROJECTOR_KAFKA_SCRAM_PASSWORD and PROJECTOR_KAFKA_CA_FILE, and
// reach tests as [KafkaEnv.Secure] ([SecureListener]); Secure is nil for containers, kfake and
// an environment without those variables. Likewise an SSL listener that requires a client
// certificate signed by the same CA (PROJECTOR_KAFKA_MTLS_SEEDS, PROJECTOR_KAFKA_CLIENT_CERT_FILE,
// PROJECTOR_KAFKA_CLIENT_KEY_FILE: [KafkaEnv.MTLS]) and a SASL_SSL listener with OAUTHBEARER and
// Kafka's unsecured JWT validator, whose sessions last PROJECTOR_KAFKA_OAUTH_REAUTH_MS at most
// (PROJECTOR_KAFKA_OAUTH_SEEDS: [KafkaEnv.OAuth], tokens from [UnsecuredJWT]).
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
