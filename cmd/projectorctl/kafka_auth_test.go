package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/internal/testenv"
)

// ctlOver runs projectorctl against the fixture's Redis and topic, reaching
// Kafka through seeds with the given Kafka flags instead of the PLAINTEXT
// listener.
func (f *fixture) ctlOver(seeds []string, kafkaFlags []string, args ...string) (int, string, string) {
	f.t.Helper()
	base := []string{"--brokers", strings.Join(seeds, ","), "--topic", f.store.Config().Topic,
		"--redis-url", "redis://" + f.redis.Addr, "--namespace", f.ns, "--by", "tester"}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, append(append(args, base...), kafkaFlags...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestStatusOverMutualTLSAndOAuthBearer runs projectorctl status over the
// broker's SSL listener that requires a client certificate (and, as the
// negative control, without one), and over its OAUTHBEARER listener with a
// token file (and with an expired token).
func TestStatusOverMutualTLSAndOAuthBearer(t *testing.T) {
	f := newFixture(t)
	if f.kafka.MTLS == nil || f.kafka.OAuth == nil {
		if testenv.RequireReal() {
			t.Fatal("real servers are required but the broker has no mTLS or OAUTHBEARER listener (scripts/test.sh and scripts/infra.sh start them)")
		}
		t.Skipf("Kafka from %s has no mTLS and OAUTHBEARER listeners", f.kafka.Kind)
	}
	f.produce(4, 2)
	f.start(false)
	f.waitCounts(time.Minute)
	time.Sleep(500 * time.Millisecond) // offsets committed

	status := func(what string, seeds, flags []string) {
		t.Helper()
		code, out, errOut := f.ctlOver(seeds, flags, "status", f.name, "-o", "json")
		if code != exitOK {
			t.Fatalf("status over %s: exit %d: %s", what, code, errOut)
		}
		var st Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status JSON over %s: %v\n%s", what, err, out)
		}
		if st.State != "running" || len(st.Members) != 1 || len(st.Partitions) != 4 {
			t.Errorf("status over %s = %+v", what, st)
		}
	}
	refused := func(what string, seeds, flags []string, want, secret string) {
		t.Helper()
		code, out, errOut := f.ctlOver(seeds, flags, "status", f.name, "-o", "json")
		if code == exitOK || !strings.Contains(errOut, want) {
			t.Errorf("status %s: exit %d, stderr %q, want a failure saying %q", what, code, errOut, want)
		}
		if secret != "" && strings.Contains(out+errOut, secret) {
			t.Errorf("status %s shows the token:\n%s%s", what, out, errOut)
		}
		t.Logf("status %s: exit %d: %s", what, code, strings.TrimSpace(errOut))
	}

	m := f.kafka.MTLS
	status("mTLS", m.Seeds, []string{"--kafka-tls-ca", m.CAFile, "--kafka-tls-cert", m.CertFile, "--kafka-tls-key", m.KeyFile})
	refused("over the mTLS listener without a client certificate", m.Seeds, []string{"--kafka-tls-ca", m.CAFile}, "bad certificate", "")

	o := f.kafka.OAuth
	file := filepath.Join(t.TempDir(), "token")
	token := testenv.UnsecuredJWT("projectorctl", time.Now().Add(time.Hour))
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oauthFlags := []string{"--kafka-tls-ca", o.CAFile, "--kafka-sasl-mechanism", "OAUTHBEARER", "--kafka-oauth-token-file", file}
	status("OAUTHBEARER", o.Seeds, oauthFlags)
	expired := testenv.UnsecuredJWT("projectorctl", time.Now().Add(-time.Minute))
	if err := os.WriteFile(file, []byte(expired), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("with an expired OAUTHBEARER token", o.Seeds, oauthFlags, "SASL_AUTHENTICATION_FAILED", expired)
	refused("with OAUTHBEARER and no token file", o.Seeds, oauthFlags[:4], "kafka-oauth-token-file", "")
}
