package kafkastore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/oauth"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// TestOAuthTokenFile checks the OAUTHBEARER token callback: it reads the
// file again on every call, trims white space, and its errors name the
// file but never what is in it.
func TestOAuthTokenFile(t *testing.T) {
	const secret = "s3cret-t0ken-that-must-not-show"
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cb := kafkastore.OAuthTokenFile(file)
	for _, tok := range []string{"token-1", "token-2", "token-3"} {
		write("  " + tok + "\n")
		a, err := cb(t.Context())
		if err != nil || a.Token != tok {
			t.Fatalf("callback = %q, %v; want %q (the file re-read)", a.Token, err, tok)
		}
	}
	noSecret := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if !strings.Contains(err.Error(), file) {
			t.Errorf("%s: error does not name the file: %v", what, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the token: %v", what, err)
		}
	}
	write(" \n\t")
	_, err := cb(t.Context())
	noSecret("empty file", err)
	if !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	write(secret + strings.Repeat("x", 1<<20))
	_, err = cb(t.Context())
	noSecret("huge file", err)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, err = cb(t.Context())
	noSecret("missing file", err)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// A directory cannot be read.
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = cb(t.Context())
	noSecret("directory", err)
}

func TestOAuthSecurityOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sec  kafkastore.Security
		want string
	}{
		{kafkastore.Security{SASLMechanism: "OAUTHBEARER"}, "needs OAuthTokenFile"},
		{kafkastore.Security{SASLMechanism: "OAUTHBEARER", OAuthTokenFile: file, Username: "u"}, "not a username or password"},
		{kafkastore.Security{SASLMechanism: "OAUTHBEARER", OAuthTokenFile: file + ".missing"}, file + ".missing"},
		{kafkastore.Security{SASLMechanism: "SCRAM-SHA-256", Username: "u", Password: "p", OAuthTokenFile: file}, "is for SASL OAUTHBEARER"},
		{kafkastore.Security{OAuthTokenFile: file}, "is for SASL OAUTHBEARER"},
	}
	for _, tt := range tests {
		if _, err := tt.sec.Opts(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Opts(%+v) = %v, want %q", tt.sec, err, tt.want)
		}
	}
	if opts, err := (kafkastore.Security{SASLMechanism: "oauthbearer", OAuthTokenFile: file, TLS: true}).Opts(); err != nil || len(opts) != 2 {
		t.Errorf("OAUTHBEARER over TLS: %d options, %v", len(opts), err)
	}
}

// realListeners returns the real broker, failing when real servers are
// required but the listener the test needs is missing, skipping otherwise.
func realListener(t *testing.T, what string, missing bool) *testenv.KafkaEnv {
	t.Helper()
	env := testenv.Kafka(t)
	if missing {
		if testenv.RequireReal() {
			t.Fatalf("the real broker has no %s listener: run the tests with scripts/test.sh or after scripts/infra.sh up", what)
		}
		t.Skipf("no %s listener on the %s cluster", what, env.Kind)
	}
	return env
}

// TestMutualTLSOnRealBroker runs the store over the real broker's SSL
// listener that requires a client certificate, and checks that the
// listener refuses a client without one.
func TestMutualTLSOnRealBroker(t *testing.T) {
	env := testenv.Kafka(t)
	env = realListener(t, "mTLS", env.MTLS == nil)
	m := env.MTLS
	checkSecureStore(t, m.Seeds, env.TopicName(t, "mtls"), kafkastore.Security{TLS: true, CAFile: m.CAFile, CertFile: m.CertFile, KeyFile: m.KeyFile})

	opts, err := kafkastore.Security{TLS: true, CAFile: m.CAFile}.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(m.Seeds...), kgo.RequestRetries(0), kgo.RetryTimeout(3*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	_, err = cl.Request(ctx, kmsg.NewPtrMetadataRequest())
	// Java answers a missing client certificate with a bad_certificate
	// alert (TLS 1.2 and 1.3); certificate_required is TLS 1.3's own.
	if err == nil || !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("metadata without a client certificate = %v, want the broker's TLS alert", err)
	} else {
		t.Logf("without a client certificate: %v", err)
	}
}

// TestOAuthBearerOnRealBroker runs the store over the real broker's
// OAUTHBEARER listener with a token file, checks that the callback runs
// again at every re-authentication the broker asks for
// (connections.max.reauth.ms), and that an expired token is refused.
func TestOAuthBearerOnRealBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for re-authentications")
	}
	env := testenv.Kafka(t)
	env = realListener(t, "OAUTHBEARER", env.OAuth == nil)
	o := env.OAuth
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(testenv.UnsecuredJWT("projector", time.Now().Add(time.Hour))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkSecureStore(t, o.Seeds, env.TopicName(t, "oauth"), kafkastore.Security{SASLMechanism: "OAUTHBEARER", OAuthTokenFile: file, CAFile: o.CAFile})

	// The same callback, counted: one connection that stays busy for
	// 2.5 re-authentication intervals authenticates at least three times.
	var calls atomic.Int32
	read := kafkastore.OAuthTokenFile(file)
	tlsOpts, err := kafkastore.Security{TLS: true, CAFile: o.CAFile}.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(tlsOpts, kgo.SeedBrokers(o.Seeds...),
		kgo.SASL(oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			calls.Add(1)
			return read(ctx)
		})))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxFor(t)
	for end := time.Now().Add(o.Reauth * 5 / 2); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if _, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
			t.Fatalf("metadata after %d authentications: %v", calls.Load(), err)
		}
	}
	t.Logf("the token callback ran %d times in %v", calls.Load(), o.Reauth*5/2)
	if n := calls.Load(); n < 3 {
		t.Errorf("the token callback ran %d times in %v, want at least 3 (re-authentication every %v)", n, o.Reauth*5/2, o.Reauth)
	}

	// An expired token is refused.
	if err := os.WriteFile(file, []byte(testenv.UnsecuredJWT("projector", time.Now().Add(-time.Minute))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := kafkastore.Security{SASLMechanism: "OAUTHBEARER", OAuthTokenFile: file, CAFile: o.CAFile}.Opts()
	if err != nil {
		t.Fatal(err)
	}
	_, err = newGuarded(ctx, kafkastore.Config{Seeds: o.Seeds, Topic: env.TopicName(t, "events"), Partitions: 1, ClientOpts: opts, RequestTimeout: 10 * time.Second})
	if !errors.Is(err, kerr.SaslAuthenticationFailed) && (err == nil || !strings.Contains(err.Error(), "OAUTHBEARER authentication failed")) {
		t.Errorf("New with an expired token = %v, want an OAUTHBEARER authentication failure", err)
	}
}
