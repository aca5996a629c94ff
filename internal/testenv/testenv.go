package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// Kinds of environment, as reported in KafkaEnv.Kind and RedisEnv.Kind.
const (
	KindEnv            = "env"            // addresses from environment variables
	KindTestcontainers = "testcontainers" // containers started through Docker
	KindKfake          = "kfake"          // franz-go's in-process fake Kafka
	KindMiniredis      = "miniredis"      // in-process fake Redis
)

// Environment variables read by this package.
const (
	EnvKafkaSeeds  = "PROJECTOR_KAFKA_SEEDS"
	EnvRedisAddr   = "PROJECTOR_REDIS_ADDR"
	EnvRequireReal = "PROJECTOR_REQUIRE_REAL"
	EnvKafkaImage  = "PROJECTOR_KAFKA_IMAGE"
	EnvRedisImage  = "PROJECTOR_REDIS_IMAGE"
	EnvNoDocker    = "PROJECTOR_TESTENV_NO_DOCKER"

	// The real broker's SASL_SSL listener (SCRAM-SHA-256 and SCRAM-SHA-512 over TLS), see
	// KafkaEnv.Secure.
	EnvKafkaSASLSSLSeeds  = "PROJECTOR_KAFKA_SASL_SSL_SEEDS"
	EnvKafkaSCRAMUser     = "PROJECTOR_KAFKA_SCRAM_USER"
	EnvKafkaSCRAMPassword = "PROJECTOR_KAFKA_SCRAM_PASSWORD"
	EnvKafkaCAFile        = "PROJECTOR_KAFKA_CA_FILE"

	// The real broker's SSL listener that requires a client certificate (mutual TLS), see
	// KafkaEnv.MTLS; its certificate is signed by the CA of EnvKafkaCAFile.
	EnvKafkaMTLSSeeds      = "PROJECTOR_KAFKA_MTLS_SEEDS"
	EnvKafkaClientCertFile = "PROJECTOR_KAFKA_CLIENT_CERT_FILE"
	EnvKafkaClientKeyFile  = "PROJECTOR_KAFKA_CLIENT_KEY_FILE"
	// The real broker's SASL_SSL listener with OAUTHBEARER (unsecured JWTs) and its
	// connections.max.reauth.ms, see KafkaEnv.OAuth.
	EnvKafkaOAuthSeeds    = "PROJECTOR_KAFKA_OAUTH_SEEDS"
	EnvKafkaOAuthReauthMS = "PROJECTOR_KAFKA_OAUTH_REAUTH_MS"
)

const howToRunReal = "run the tests with scripts/test.sh (starts a real Kafka and Redis; needs Java 17+ and Maven, " +
	"or Docker), or start them with `scripts/infra.sh up` and export what it prints"

// RequireReal reports whether fakes are forbidden: PROJECTOR_REQUIRE_REAL=1 or CI=true.
func RequireReal() bool {
	return os.Getenv(EnvRequireReal) == "1" || strings.EqualFold(os.Getenv("CI"), "true")
}

// Shared servers live for the whole test binary: starting a container or a fake per test
// would cost seconds each. Main stops them.
var (
	closersMu sync.Mutex
	closers   []func()

	dockerOnce sync.Once
	dockerOK   bool
	dockerWhy  error
)

func onShutdown(fn func()) {
	closersMu.Lock()
	defer closersMu.Unlock()
	closers = append(closers, fn)
}

// Main runs the tests and then stops the containers and fakes this package started:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the containers and fakes started so far, newest first. Tests must not use
// an environment afterwards.
func Shutdown() {
	closersMu.Lock()
	fns := closers
	closers = nil
	closersMu.Unlock()
	for _, fn := range slices.Backward(fns) {
		fn()
	}
}

// dockerHealthy asks testcontainers whether a Docker engine answers. Where there is none this
// takes about a millisecond.
func dockerHealthy() (bool, error) {
	dockerOnce.Do(func() {
		if os.Getenv(EnvNoDocker) == "1" {
			dockerWhy = fmt.Errorf("%s=1", EnvNoDocker)
			return
		}
		defer func() {
			if r := recover(); r != nil {
				dockerOK, dockerWhy = false, fmt.Errorf("docker provider panicked: %v", r)
			}
		}()
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			dockerWhy = err
			return
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Health(ctx); err != nil {
			dockerWhy = err
			return
		}
		dockerOK = true
	})
	return dockerOK, dockerWhy
}

// uniqueName turns the test's name into something safe for topic names and Redis keys
// (letters, digits, '.', '_', '-'), short enough for either, with a random suffix so that
// reruns and parallel runs never meet.
func uniqueName(t testing.TB, parts ...string) string {
	var b strings.Builder
	for _, s := range append([]string{t.Name()}, parts...) {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, r := range s {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
	}
	name := b.String()
	if len(name) > 120 {
		name = name[:120]
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	return name + "-" + hex.EncodeToString(suffix[:])
}

func fakeBanner(what, fake, why string) string {
	line := strings.Repeat("!", 78)
	return fmt.Sprintf("\n%s\n!!! testenv: %s is the IN-PROCESS FAKE %s, not a real server (%s).\n"+
		"!!! Passing here is no evidence that it works against %s. For real servers: %s.\n%s",
		line, what, fake, why, what, howToRunReal, line)
}

// announced remembers which fake banners went to stderr already: once per binary is enough
// there, the per-test t.Log carries it into each test's log.
var announced sync.Map

func announceFake(t testing.TB, banner string) {
	t.Helper()
	t.Log(banner)
	if _, loaded := announced.LoadOrStore(banner, true); !loaded {
		fmt.Fprintln(os.Stderr, banner)
	}
}
