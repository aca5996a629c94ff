package redischeckpoint_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// requireRealRedis skips on the in-process fake, which lacks the feature
// under test; under PROJECTOR_REQUIRE_REAL testenv has already failed the
// test before a fake could be handed out.
func requireRealRedis(t *testing.T, env *testenv.RedisEnv, feature string) {
	t.Helper()
	if !env.Real {
		t.Skipf("%s needs a real Redis server; %s is the fake", feature, env.Kind)
	}
}

func TestACLUserLimitedToOneProjection(t *testing.T) {
	env := testenv.Redis(t)
	requireRealRedis(t, env, "ACL users")
	ctx := ctxFor(t)
	ns := env.Prefix(t)
	user, pass := "u-"+ns, "pw-"+ns
	rules := []any{"ACL", "SETUSER", user, "reset", "on", ">" + pass, "~" + ns + ":{billing}:*", "resetchannels", "-@all", "+@connection",
		"+eval", "+evalsha", "+hget", "+hmget", "+hscan", "+hset", "+hdel", "+hexists", "+hincrby", "+incrby", "+unlink", "+scan", "+multi", "+exec", "+type"}
	if err := env.Client.Do(ctx, rules...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { _ = env.Client.Do(context.Background(), "ACL", "DELUSER", user).Err() })

	client, err := redischeckpoint.NewClient(redischeckpoint.ClientConfig{URL: "redis://" + env.Addr, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	fence, err := s.AcquireFence(ctx, "billing", 0)
	if err != nil {
		t.Fatalf("AcquireFence as the limited user: %v", err)
	}
	fctx := controlplane.WithFence(ctx, fence)
	if err := s.Advance(fctx, "billing", map[string]uint64{"process/t/a": 3}); err != nil {
		t.Fatalf("Advance as the limited user: %v", err)
	}
	p, err := s.NewAtomicProjection("billing", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("totals"), "all", 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ApplyBatch(fctx, []framework.Event{{StreamID: "process/t/b", Sequence: 1}}); err != nil {
		t.Fatalf("atomic apply as the limited user: %v", err)
	}
	cp, err := s.Load(ctx, "billing")
	if err != nil || cp.Cursor("process/t/a") != 3 || cp.Cursor("process/t/b") != 1 {
		t.Fatalf("Load as the limited user = %v, %v", cp, err)
	}
	if names, err := s.Names(ctx); err != nil || len(names) != 1 || names[0] != "billing" {
		t.Errorf("Names as the limited user = %v, %v", names, err)
	}
	// Another projection's keys are out of reach.
	err = s.Advance(ctx, "other", map[string]uint64{"process/t/a": 1})
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Advance of another projection = %v, want NOPERM", err)
	}
	if _, err := s.AcquireFence(ctx, "other", 0); err == nil {
		t.Error("AcquireFence of another projection succeeded")
	}
}

func TestWrongPasswordIsAClearError(t *testing.T) {
	env := testenv.Redis(t)
	requireRealRedis(t, env, "authentication")
	client, err := redischeckpoint.NewClient(redischeckpoint.ClientConfig{Addrs: []string{env.Addr}, Username: "nobody-" + env.Prefix(t), Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, _ := redischeckpoint.New(redischeckpoint.Config{Client: client})
	_, err = s.Load(ctxFor(t), "p")
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Load with a wrong password = %v, want WRONGPASS", err)
	}
}

func TestUnreachableAndSilentServersFailInsteadOfHanging(t *testing.T) {
	// A closed port: refused at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// A server that accepts and never answers: only the read timeout ends it.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for name, addr := range map[string]string{"closed port": closed, "silent server": silent.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			client, err := redischeckpoint.NewClient(redischeckpoint.ClientConfig{
				Addrs: []string{addr}, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			s, _ := redischeckpoint.New(redischeckpoint.Config{Client: client})
			// The context allows far longer than the timeouts: the error
			// must come from the client's own timeouts, not from ctx.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err = s.Load(ctx, "p")
			if err == nil || errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				t.Fatalf("Load = %v, want the client's own error", err)
			}
			if !strings.Contains(err.Error(), addr) && !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "refused") {
				t.Errorf("error %q says neither where nor what", err)
			}
		})
	}
}

func TestClientConfigProblems(t *testing.T) {
	tests := []struct {
		cfg  redischeckpoint.ClientConfig
		want string
	}{
		{redischeckpoint.ClientConfig{}, "needs URL or Addrs"},
		{redischeckpoint.ClientConfig{URL: "redis://a:1", Addrs: []string{"b:2"}}, "both URL and Addrs"},
		{redischeckpoint.ClientConfig{URL: "http://user:secret@host:1"}, "xxxxx"},
		{redischeckpoint.ClientConfig{URL: "redis://user:secret@host:port/0"}, "invalid port"}, // url.Parse quotes the URL
		{redischeckpoint.ClientConfig{URL: "redis://:secret@host:6379/zero"}, "database number"},
		{redischeckpoint.ClientConfig{Addrs: []string{"a:1"}, CAFile: "/nonexistent/ca.pem"}, "CA file"},
		{redischeckpoint.ClientConfig{Addrs: []string{"a:1"}, CertFile: "c.pem"}, "both CertFile and KeyFile"},
	}
	for _, tt := range tests {
		_, err := redischeckpoint.NewClient(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewClient(%+v) = %v, want an error with %q", tt.cfg, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q leaks the password", err)
		}
	}
}

// TestTLS starts a TLS-only redis-server with a throw-away CA and checks
// that rediss:// with the CA works and that the wrong trust fails.
func TestTLS(t *testing.T) {
	env := testenv.Redis(t)
	requireRealRedis(t, env, "TLS")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH (scripts/test.sh installs it): %v", err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCertificates(t, dir)
	port := freePort(t)
	cmd := exec.Command(bin, "--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir)
	logFile, _ := os.Create(filepath.Join(dir, "redis.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start TLS redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	client, err := redischeckpoint.NewClient(redischeckpoint.ClientConfig{URL: fmt.Sprintf("rediss://127.0.0.1:%d", port), CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := client.Ping(t.Context()).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("TLS redis-server does not answer: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if err := s.Advance(ctx, "p", map[string]uint64{"process/t/a": 4}); err != nil {
		t.Fatalf("Advance over TLS: %v", err)
	}
	if cp, err := s.Load(ctx, "p"); err != nil || cp.Cursor("process/t/a") != 4 {
		t.Fatalf("Load over TLS = %v, %v", cp, err)
	}

	// Without our CA the server's certificate is not trusted.
	untrusting, _ := redischeckpoint.NewClient(redischeckpoint.ClientConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", port)}, TLS: true})
	defer untrusting.Close()
	if err := untrusting.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS without the CA = %v, want a certificate error", err)
	}
	// Plain TCP against the TLS port does not work either.
	plain, _ := redischeckpoint.NewClient(redischeckpoint.ClientConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", port)}, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a plain connection to the TLS port succeeded")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// writeCertificates makes a CA and a server certificate for 127.0.0.1 and
// localhost, valid for an hour.
func writeCertificates(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "projector test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
