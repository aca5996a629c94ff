package worker

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// authListener returns the real broker, failing when real servers are
// required but it lacks the listener the test needs, skipping otherwise.
func authListener(t *testing.T, what string, has func(*testenv.KafkaEnv) bool) *testenv.KafkaEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("runs workers on real servers")
	}
	k := testenv.Kafka(t)
	if !has(k) {
		if testenv.RequireReal() {
			t.Fatalf("real servers are required but the broker has no %s listener (scripts/test.sh and scripts/infra.sh start one)", what)
		}
		t.Skipf("Kafka from %s has no %s listener", k.Kind, what)
	}
	return k
}

// authWorker is a worker run by runAuthWorker: it counts the events it
// applied per stream in a Redis hash.
type authWorker struct {
	t       *testing.T
	base    string
	stderr  *syncBuffer
	done    chan error
	p       *redischeckpoint.AtomicProjection
	events  *kafkastore.Store // the writer, over the PLAINTEXT listener
	stream  string
	written int
	ended   bool // Run returned, with an error waitRefused expected
}

// runAuthWorker creates a topic over the PLAINTEXT listener, writes one
// event, and runs a worker with env (the Kafka settings under test) until
// the test ends.
func runAuthWorker(t *testing.T, k *testenv.KafkaEnv, env map[string]string) *authWorker {
	t.Helper()
	clearEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	topic := k.TopicName(t, "auth")
	projection := "auth-" + strings.ReplaceAll(topic, ".", "-")
	events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: k.Seeds, Topic: topic, Partitions: 2, ReplicationFactor: 1, Guard: appendguard.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(events.Close)
	w := &authWorker{t: t, stderr: &syncBuffer{}, done: make(chan error, 1), events: events, stream: "process/acme/1"}
	w.write(ctx)
	t.Setenv("PROJECTOR_REDIS_URL", "redis://"+testenv.Redis(t).Addr)
	t.Setenv("PROJECTOR_TOPIC", topic)
	t.Setenv("PROJECTOR_PROJECTION", projection)
	t.Setenv("PROJECTOR_REDIS_NAMESPACE", "worker-auth-test")
	t.Setenv("PROJECTOR_KAFKA_SESSION_TIMEOUT", "6s")
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout syncBuffer
	built := make(chan *redischeckpoint.AtomicProjection, 1)
	opts := Options{Name: "auth", Stdout: &stdout, Stderr: w.stderr,
		Setup: func(_ context.Context, wk *Worker) (Projection, error) {
			p, err := wk.Store.NewAtomicProjection(wk.Config.Projection, func(e framework.Event, w *redischeckpoint.Writes) error {
				w.HIncrBy(w.Key("applied"), e.StreamID, 1)
				return nil
			})
			if err == nil {
				built <- p
			}
			return Versioned(p), err
		}}
	go func() { w.done <- Run(ctx, []string{"-http", "127.0.0.1:0"}, opts) }()
	t.Cleanup(func() {
		cancel()
		if w.ended {
			return
		}
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("Run: %v\n%s", err, w.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop")
		}
	})
	for addr := regexp.MustCompile(`on (http://\S+)`); w.base == ""; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("the worker ended early: %v\n%s", err, w.stderr)
		case <-ctx.Done():
			t.Fatalf("the worker did not serve HTTP\n%s", w.stderr)
		default:
		}
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			w.base = m[1]
		}
	}
	select {
	case w.p = <-built:
	case <-ctx.Done():
		t.Fatalf("Setup did not run\n%s", w.stderr)
	}
	return w
}

// write appends one event through the PLAINTEXT listener.
func (w *authWorker) write(ctx context.Context) {
	w.t.Helper()
	if _, err := w.events.Append(ctx, w.stream, framework.AnyVersion, []framework.EventData{{Type: "Ticked"}}); err != nil {
		w.t.Fatal(err)
	}
	w.written++
}

// applied is how many events the worker applied.
func (w *authWorker) applied(ctx context.Context) int {
	n, _ := w.p.Client().HGet(ctx, w.p.Key("applied"), w.stream).Int()
	return n
}

// waitApplied waits until the worker is ready and applied every event
// written, failing after timeout.
func (w *authWorker) waitApplied(ctx context.Context, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := get(ctx, w.base+"/readyz")
		if err == nil && code == 200 && w.applied(ctx) == w.written {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("not ready with %d events applied (applied %d, /readyz %d %v)\n%s", w.written, w.applied(ctx), code, err, w.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// authProblem matches what the worker logs when Kafka refuses it.
var authProblem = regexp.MustCompile(`(?i)SASL_AUTHENTICATION_FAILED|authentication failed|invalid_token|bad certificate|certificate required`)

// TestWorkerOverMutualTLS runs a worker over the broker's SSL listener that
// requires a client certificate, with the certificate and key from
// PROJECTOR_KAFKA_TLS_CERT_FILE / _KEY_FILE.
func TestWorkerOverMutualTLS(t *testing.T) {
	k := authListener(t, "mTLS", func(k *testenv.KafkaEnv) bool { return k.MTLS != nil })
	m := k.MTLS
	w := runAuthWorker(t, k, map[string]string{
		"PROJECTOR_KAFKA_BROKERS":        strings.Join(m.Seeds, ","),
		"PROJECTOR_KAFKA_TLS_CA_FILE":    m.CAFile,
		"PROJECTOR_KAFKA_TLS_CERT_FILE":  m.CertFile,
		"PROJECTOR_KAFKA_TLS_KEY_FILE":   m.KeyFile,
		"PROJECTOR_KAFKA_SASL_MECHANISM": "",
	})
	ctx := t.Context()
	w.waitApplied(ctx, time.Minute)
	for range 5 {
		w.write(ctx)
	}
	w.waitApplied(ctx, 30*time.Second)
	if authProblem.MatchString(w.stderr.String()) {
		t.Errorf("the log shows an authentication problem:\n%s", w.stderr)
	}
}

// TestWorkerOverSASL runs the worker over the broker's SASL_SSL listener
// with each mechanism it offers for a user and password: PLAIN and SCRAM
// (SHA-256 and SHA-512), trusting only the run's CA.
func TestWorkerOverSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			k := authListener(t, "SASL_SSL", func(k *testenv.KafkaEnv) bool { return k.Secure != nil })
			s := k.Secure
			w := runAuthWorker(t, k, map[string]string{
				"PROJECTOR_KAFKA_BROKERS":        strings.Join(s.Seeds, ","),
				"PROJECTOR_KAFKA_TLS_CA_FILE":    s.CAFile,
				"PROJECTOR_KAFKA_SASL_MECHANISM": mech,
				"PROJECTOR_KAFKA_USERNAME":       s.Username,
				"PROJECTOR_KAFKA_PASSWORD":       s.Password,
			})
			ctx := t.Context()
			w.waitApplied(ctx, time.Minute)
			for range 3 {
				w.write(ctx)
			}
			w.waitApplied(ctx, 30*time.Second)
			if authProblem.MatchString(w.stderr.String()) || strings.Contains(w.stderr.String(), s.Password) {
				t.Errorf("the log shows an authentication problem or the password:\n%s", w.stderr)
			}
		})
	}
}

// TestWorkerOverMutualTLSWithoutCertificate is the negative control: the
// same listener refuses a worker that shows no client certificate, and the
// worker ends saying so (the broker's TLS alert).
func TestWorkerOverMutualTLSWithoutCertificate(t *testing.T) {
	k := authListener(t, "mTLS", func(k *testenv.KafkaEnv) bool { return k.MTLS != nil })
	m := k.MTLS
	w := runAuthWorker(t, k, map[string]string{
		"PROJECTOR_KAFKA_BROKERS":     strings.Join(m.Seeds, ","),
		"PROJECTOR_KAFKA_TLS_CA_FILE": m.CAFile,
	})
	w.waitRefused(t.Context(), 45*time.Second)
}

// waitRefused waits until the worker reports that Kafka refused it: in its
// log, or as the error it ends with.
func (w *authWorker) waitRefused(ctx context.Context, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !authProblem.MatchString(w.stderr.String()) {
		select {
		case err := <-w.done:
			w.ended = true
			if err == nil || !authProblem.MatchString(err.Error()) {
				w.t.Fatalf("the worker ended with %v, want an authentication error\n%s", err, w.stderr)
			}
			w.t.Logf("the worker ends with: %v", err)
			return
		case <-ctx.Done():
			w.t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the worker reported no authentication problem within %v:\n%s", timeout, w.stderr)
		}
	}
	w.t.Logf("the worker reports: %s", firstMatchLine(w.stderr.String()))
}

func firstMatchLine(log string) string {
	for line := range strings.Lines(log) {
		if authProblem.MatchString(line) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// writeToken writes an unsecured JWT expiring at exp into file, atomically
// (as a Kubernetes projected volume swaps its files).
func writeToken(t *testing.T, file string, exp time.Time) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(testenv.UnsecuredJWT("projector-worker", exp)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func oauthEnv(o *testenv.OAuthListener, file string) map[string]string {
	return map[string]string{
		"PROJECTOR_KAFKA_BROKERS":          strings.Join(o.Seeds, ","),
		"PROJECTOR_KAFKA_TLS_CA_FILE":      o.CAFile,
		"PROJECTOR_KAFKA_SASL_MECHANISM":   "OAUTHBEARER",
		"PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": file,
	}
}

// TestWorkerOverOAuthBearer runs a worker over the broker's OAUTHBEARER
// listener, whose sessions last at most o.Reauth. Its first token expires
// soon; the test replaces the file with a later-expiring token before
// then, and the worker keeps applying events past the first token's
// expiry and several re-authentications: it read the file again. (The
// negative control, TestWorkerOverOAuthBearerTokenNotRotated, shows that
// without the new file it could not.)
func TestWorkerOverOAuthBearer(t *testing.T) {
	k := authListener(t, "OAUTHBEARER", func(k *testenv.KafkaEnv) bool { return k.OAuth != nil })
	o := k.OAuth
	file := filepath.Join(t.TempDir(), "token")
	firstExp := time.Now().Add(2 * o.Reauth)
	writeToken(t, file, firstExp)
	w := runAuthWorker(t, k, oauthEnv(o, file))
	ctx := t.Context()
	w.waitApplied(ctx, time.Minute)
	if left := time.Until(firstExp); left < o.Reauth/2 {
		t.Fatalf("the worker took too long to start: the first token expires in %v", left)
	}
	writeToken(t, file, time.Now().Add(10*time.Minute))
	end := firstExp.Add(3 * o.Reauth)
	t.Logf("token rotated; writing until %v past the first token's expiry", time.Until(end).Round(time.Second))
	for time.Now().Before(end) {
		w.write(ctx)
		time.Sleep(500 * time.Millisecond)
	}
	w.waitApplied(ctx, 30*time.Second)
	t.Logf("applied all %d events", w.written)
	if authProblem.MatchString(w.stderr.String()) {
		t.Errorf("the log shows an authentication problem:\n%s", w.stderr)
	}
	if strings.Contains(w.stderr.String(), "eyJ") {
		t.Errorf("the log shows a token:\n%s", w.stderr)
	}
}

// TestWorkerOverOAuthBearerTokenNotRotated is the negative control of
// TestWorkerOverOAuthBearer: the same worker and a token file that is not
// rewritten. Once the token expired, re-authentication fails and the worker
// reports it; the events written after that are not applied.
func TestWorkerOverOAuthBearerTokenNotRotated(t *testing.T) {
	k := authListener(t, "OAUTHBEARER", func(k *testenv.KafkaEnv) bool { return k.OAuth != nil })
	o := k.OAuth
	file := filepath.Join(t.TempDir(), "token")
	exp := time.Now().Add(2 * o.Reauth)
	writeToken(t, file, exp)
	w := runAuthWorker(t, k, oauthEnv(o, file))
	ctx := t.Context()
	w.waitApplied(ctx, time.Minute)
	if authProblem.MatchString(w.stderr.String()) {
		t.Fatalf("an authentication problem before the token expired:\n%s", w.stderr)
	}
	// Events keep coming, and are applied while the token is valid. The
	// writes stop half a re-authentication period before the expiry, so the
	// last of them has seconds to be applied while the session is still
	// valid (close to the expiry the broker may already refuse the
	// re-authentication, and a busy machine needs time to apply).
	for time.Now().Before(exp.Add(-o.Reauth / 2)) {
		w.write(ctx)
		time.Sleep(500 * time.Millisecond)
	}
	w.waitApplied(ctx, time.Until(exp.Add(-time.Second)))
	if authProblem.MatchString(w.stderr.String()) {
		t.Fatalf("an authentication problem before the token expired:\n%s", w.stderr)
	}
	time.Sleep(time.Until(exp))
	w.waitRefused(ctx, 3*o.Reauth)
	t.Logf("refused %v after the token's expiry", time.Since(exp).Round(100*time.Millisecond))
	if strings.Contains(w.stderr.String(), "eyJ") {
		t.Errorf("the log shows a token:\n%s", w.stderr)
	}
}
