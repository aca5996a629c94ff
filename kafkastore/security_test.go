package kafkastore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// TestSCRAMOverTLSOnKfake runs the store through SCRAM-SHA-256 and -512
// over TLS against franz-go's in-process broker. (The real broker's
// SASL_SSL listener is tested in TestSCRAMOverTLSOnRealBroker.)
func TestSCRAMOverTLSOnKfake(t *testing.T) {
	caFile, serverTLS := testCertificates(t)
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "projector", "s3cret"), kfake.TLS(serverTLS))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			checkSecureStore(t, cluster.ListenAddrs(), "secure-events", kafkastore.Security{SASLMechanism: mech, Username: "projector", Password: "s3cret", CAFile: caFile})
			// The wrong password is refused (kfake just closes the
			// connection; the real broker's answer is checked in
			// TestSCRAMOverTLSOnRealBroker).
			opts, _ := kafkastore.Security{SASLMechanism: mech, Username: "projector", Password: "wrong", CAFile: caFile}.Opts()
			_, err = newGuarded(ctxFor(t), kafkastore.Config{Seeds: cluster.ListenAddrs(), Topic: "events", Partitions: 3, ClientOpts: opts, RequestTimeout: 5 * time.Second})
			if err == nil {
				t.Error("New with a wrong password succeeded")
			}
		})
	}
}

// checkSecureStore appends and reads through a store using sec.
func checkSecureStore(t *testing.T, seeds []string, topic string, sec kafkastore.Security) {
	t.Helper()
	opts, err := sec.Opts()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	s, err := newGuarded(ctx, kafkastore.Config{Seeds: seeds, Topic: topic, Partitions: 1, ReplicationFactor: 1, ClientOpts: opts})
	if err != nil {
		t.Fatalf("New over %s/TLS: %v", sec.SASLMechanism, err)
	}
	defer s.Close()
	if _, err := s.Append(ctx, "process/t/secure", framework.NoStream, []framework.EventData{{Type: "Opened"}, {Type: "Closed"}}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	var types []string
	for e, err := range s.ReadStream(ctx, "process/t/secure", 0) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "Opened,Closed" {
		t.Errorf("read %v, want [Opened Closed]", types)
	}
}

func TestSecurityOptionProblems(t *testing.T) {
	tests := []struct {
		sec  kafkastore.Security
		want string
	}{
		{kafkastore.Security{SASLMechanism: "GSSAPI", Username: "u"}, "not one of"},
		{kafkastore.Security{SASLMechanism: "PLAIN"}, "needs a username"},
		{kafkastore.Security{TLS: true, CAFile: "/nonexistent"}, "CA file"},
		{kafkastore.Security{TLS: true, CertFile: "c.pem"}, "both CertFile and KeyFile"},
	}
	for _, tt := range tests {
		if _, err := tt.sec.Opts(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Opts(%+v) = %v, want %q", tt.sec, err, tt.want)
		}
	}
	if opts, err := (kafkastore.Security{SASLMechanism: "PLAIN", Username: "u", Password: "p", TLS: true}).Opts(); err != nil || len(opts) != 2 {
		t.Errorf("PLAIN over TLS: %d options, %v", len(opts), err)
	}
}

// testCertificates makes a CA and a server certificate for 127.0.0.1 and
// returns the CA's PEM file and the server's TLS config.
func testCertificates(t *testing.T) (string, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// TestSCRAMOverTLSOnRealBroker runs the store over the real broker's
// SASL_SSL listener (scripts/infra.sh starts it), with both SCRAM
// mechanisms, and checks the broker's refusal of a wrong password.
func TestSCRAMOverTLSOnRealBroker(t *testing.T) {
	env := testenv.Kafka(t)
	if env.Secure == nil {
		if testenv.RequireReal() {
			t.Fatal("the real broker has no SASL_SSL listener: run the tests with scripts/test.sh")
		}
		t.Skipf("no SASL_SSL listener on the %s cluster", env.Kind)
	}
	sec := env.Secure
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			checkSecureStore(t, sec.Seeds, env.TopicName(t, "secure"), kafkastore.Security{SASLMechanism: mech, Username: sec.Username, Password: sec.Password, CAFile: sec.CAFile})
			opts, _ := kafkastore.Security{SASLMechanism: mech, Username: sec.Username, Password: "wrong", CAFile: sec.CAFile}.Opts()
			_, err := newGuarded(ctxFor(t), kafkastore.Config{Seeds: sec.Seeds, Topic: env.TopicName(t, "events"), Partitions: 1, ClientOpts: opts, RequestTimeout: 10 * time.Second})
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Errorf("New with a wrong password = %v, want SASL_AUTHENTICATION_FAILED", err)
			}
		})
	}
}
