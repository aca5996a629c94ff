package testenv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/projector-dev/projector/internal/testenv"
)

// secureListener returns the real broker's SASL_SSL listener, skipping where there is none
// to be had (containers, kfake, no environment) and failing when real servers are required
// but the environment names none.
func secureListener(t *testing.T) (*testenv.KafkaEnv, *testenv.SecureListener) {
	t.Helper()
	k := testenv.Kafka(t)
	if k.Kind != testenv.KindEnv || !k.Real {
		t.Skipf("Kafka from %s: only the broker of scripts/test.sh / scripts/infra.sh has a SASL_SSL listener", k.Kind)
	}
	if k.Secure == nil {
		if testenv.RequireReal() {
			t.Fatalf("real servers are required but %s is unset: the broker has no SASL_SSL listener for this test "+
				"(scripts/test.sh and scripts/infra.sh set it)", testenv.EnvKafkaSASLSSLSeeds)
		}
		t.Skipf("%s unset: no SASL_SSL listener", testenv.EnvKafkaSASLSSLSeeds)
	}
	return k, k.Secure
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA file %s holds no PEM certificate", file)
	}
	return pool
}

func scramMechanism(name, user, pass string) sasl.Mechanism {
	if name == "PLAIN" {
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	}
	auth := scram.Auth{User: user, Pass: pass}
	if name == "SCRAM-SHA-512" {
		return auth.AsSha512Mechanism()
	}
	return auth.AsSha256Mechanism()
}

func secureClient(t *testing.T, s *testenv.SecureListener, roots *x509.CertPool, mech sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(s.Seeds...),
		// RootCAs nil means the system roots, which do not know the throw-away CA.
		kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}),
		kgo.SASL(mech),
		kgo.DialTimeout(5 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// metadata sends one metadata request: it needs a TLS handshake and SASL authentication.
func metadata(ctx context.Context, cl *kgo.Client) error {
	_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
	return err
}

// TestKafkaSCRAMOverTLS proves against the real broker that PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
// work over TLS trusting only the run's CA: a record goes through the SASL_SSL listener and
// back. A wrong password is refused with a SASL authentication error, and a client that does
// not trust the CA fails the TLS handshake.
func TestKafkaSCRAMOverTLS(t *testing.T) {
	t.Parallel()
	k, s := secureListener(t)
	roots := caPool(t, s.CAFile)

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			t.Run("roundtrip", func(t *testing.T) {
				t.Parallel()
				topic := k.Topic(t, "scram")
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()

				producer := secureClient(t, s, roots, scramMechanism(mech, s.Username, s.Password))
				want := &kgo.Record{Topic: topic, Key: []byte(mech), Value: []byte(t.Name())}
				if err := producer.ProduceSync(ctx, want).FirstErr(); err != nil {
					t.Fatalf("produce over SASL_SSL with %s: %v", mech, err)
				}
				consumer := secureClient(t, s, roots, scramMechanism(mech, s.Username, s.Password),
					kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
				for {
					fetches := consumer.PollFetches(ctx)
					if err := ctx.Err(); err != nil {
						t.Fatalf("no record consumed from %s over SASL_SSL with %s: %v", topic, mech, err)
					}
					fetches.EachError(func(topic string, p int32, err error) {
						t.Fatalf("fetch %s/%d: %v", topic, p, err)
					})
					var got *kgo.Record
					fetches.EachRecord(func(r *kgo.Record) { got = r })
					if got == nil {
						continue
					}
					if string(got.Key) != string(want.Key) || string(got.Value) != string(want.Value) || got.Offset != want.Offset {
						t.Fatalf("consumed %q=%q at %d, produced %q=%q at %d", got.Key, got.Value, got.Offset, want.Key, want.Value, want.Offset)
					}
					return
				}
			})

			t.Run("wrong password", func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cl := secureClient(t, s, roots, scramMechanism(mech, s.Username, s.Password+"-wrong"))
				err := metadata(ctx, cl)
				if !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("metadata with a wrong %s password: err = %v, want SASL_AUTHENTICATION_FAILED", mech, err)
				}
				t.Logf("wrong password refused: %v", err)
			})

			t.Run("untrusted CA", func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cl := secureClient(t, s, nil, scramMechanism(mech, s.Username, s.Password))
				err := metadata(ctx, cl)
				var unknown x509.UnknownAuthorityError
				if !errors.As(err, &unknown) {
					t.Fatalf("metadata trusting only the system roots: err = %v, want an x509 unknown authority error", err)
				}
				t.Logf("untrusted CA refused: %v", err)
			})
		})
	}
}
