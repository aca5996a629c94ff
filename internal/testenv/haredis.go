package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// HARedisTLS is the TLS-only Redis set of scripts/ha.sh (the test command
// starts it): a master and replica with three Sentinels, and a 3-master
// Cluster, every server with ACL users and certificates of one throw-away
// CA. The Cluster requires a client certificate (tls-auth-clients yes);
// the master and the Sentinels do not.
type HARedisTLS struct {
	// Addr is the master's TLS address (tls-redis-1).
	Addr string
	// Sentinels monitor the master as MasterName on its TLS port.
	Sentinels  []string
	MasterName string
	// Cluster are the seeds of the TLS Cluster.
	Cluster []string
	// CAFile is the CA of every server certificate; CertFile and KeyFile a
	// client certificate of it.
	CAFile, CertFile, KeyFile string
	// Username and Password are the ACL user of the data servers (master,
	// replica, Cluster).
	Username, Password string
	// SentinelUsername and SentinelPassword are the ACL user of the
	// Sentinels, another one.
	SentinelUsername, SentinelPassword string
}

// HARedisTLSEnv reads the PROJECTOR_HA_REDIS_TLS_* and _ACL_* variables of
// scripts/ha.sh (passwords from their files). Without them the test fails
// under PROJECTOR_REQUIRE_REAL=1 or CI=true and is skipped otherwise.
func HARedisTLSEnv(t testing.TB) *HARedisTLS {
	t.Helper()
	e := &HARedisTLS{
		Addr:             os.Getenv("PROJECTOR_HA_REDIS_TLS_ADDR"),
		Sentinels:        splitList(os.Getenv("PROJECTOR_HA_REDIS_TLS_SENTINELS")),
		MasterName:       os.Getenv("PROJECTOR_HA_REDIS_TLS_MASTER_NAME"),
		CAFile:           os.Getenv("PROJECTOR_HA_REDIS_TLS_CA_FILE"),
		CertFile:         os.Getenv("PROJECTOR_HA_REDIS_TLS_CERT_FILE"),
		KeyFile:          os.Getenv("PROJECTOR_HA_REDIS_TLS_KEY_FILE"),
		Username:         os.Getenv("PROJECTOR_HA_REDIS_ACL_USER"),
		SentinelUsername: os.Getenv("PROJECTOR_HA_REDIS_SENTINEL_ACL_USER"),
	}
	for _, node := range splitList(os.Getenv("PROJECTOR_HA_REDIS_TLS_CLUSTER")) {
		_, addr, _ := strings.Cut(node, "=") // "1=127.0.0.1:21440"
		e.Cluster = append(e.Cluster, addr)
	}
	var problems []string
	for _, f := range []struct {
		env string
		dst *string
	}{{"PROJECTOR_HA_REDIS_ACL_PASSWORD_FILE", &e.Password}, {"PROJECTOR_HA_REDIS_SENTINEL_ACL_PASSWORD_FILE", &e.SentinelPassword}} {
		name := os.Getenv(f.env)
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		*f.dst = strings.TrimSpace(string(b))
	}
	if e.Addr == "" || len(e.Sentinels) == 0 || e.MasterName == "" || len(e.Cluster) == 0 || e.CAFile == "" ||
		e.CertFile == "" || e.KeyFile == "" || e.Username == "" || e.Password == "" || e.SentinelUsername == "" ||
		e.SentinelPassword == "" {
		problems = append(problems, "PROJECTOR_HA_REDIS_TLS_* or PROJECTOR_HA_REDIS_*ACL_* unset")
	}
	if len(problems) > 0 {
		msg := "needs scripts/ha.sh's TLS Redis set (" + strings.Join(problems, "; ") +
			"; scripts/test.sh starts it unless PROJECTOR_NO_HA=1, or: eval \"$(scripts/ha.sh env)\")"
		if RequireReal() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return e
}

// ForeignCA writes the certificate of a new CA that signed nothing into a
// temporary directory and returns its path: a wrong CA for negative tests.
func ForeignCA(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a foreign test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "foreign-ca.crt")
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
