package charttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// workerEnums are the schema's enums that reach the worker's settings,
// each with the values document that sets one of its values (%s).
var workerEnums = map[string]string{
	"/worker/logLevel":      "worker: {logLevel: %s}",
	"/worker/logFormat":     "worker: {logFormat: %s}",
	"/kafka/sasl/mechanism": "kafka: {sasl: {mechanism: '%s'}}\ncredentials: {kafkaUsername: projector, kafkaPassword: pw}",
	"/otel/protocol":        "otel: {endpoint: 'http://otel-collector:4317', protocol: '%s'}",
	"/otel/tracesSampler":   "otel: {tracesSampler: '%s'}",
	"/otel/eventSpans":      "otel: {eventSpans: '%s'}",
	"/kafka/groupProtocol":  "kafka: {groupProtocol: '%s'}",
}

// workerEnumValues are the values of workerEnums that need a values
// document of their own; TLSDIR stands for the directory of the mounted
// TLS Secret's stand-in (which holds a token file too).
var workerEnumValues = map[string]string{
	"/kafka/sasl/mechanism=OAUTHBEARER": "kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: TLSDIR/token}}, tls: {enabled: true}}",
}

// otherEnums are the schema's enums that do not reach the worker, and
// what checks them instead.
var otherEnums = map[string]string{
	"/image/pullPolicy": "the kubelet (TestManifestsValidate decodes it with client-go)",
	"/podDisruptionBudget/unhealthyPodEvictionPolicy": "the Kubernetes API (TestManifestsValidate)",
	"/autoscaling/keda/offsetResetPolicy":             "KEDA (TestKEDATrigger)",
	"/replay/command":                                 "the replay Job's projectorctl (TestReplayJob)",
}

// TestEverySchemaValueStartsTheWorker renders the chart for every value
// of every enum of the schema that reaches the worker, and for each Redis
// and TLS mode, and runs the worker's own configuration check
// (-check-config, which builds everything the worker builds before it
// connects) on the rendered container's arguments and environment. What
// the schema accepts the worker accepts: a value the worker would refuse
// at start (a crash loop) fails here instead.
func TestEverySchemaValueStartsTheWorker(t *testing.T) {
	enums := schemaEnums(t)
	var cases []struct{ name, vals string }
	for path, values := range enums {
		if _, ok := otherEnums[path]; ok {
			continue
		}
		doc, ok := workerEnums[path]
		if !ok {
			t.Errorf("schema enum %s: neither in workerEnums (run against the worker) nor in otherEnums", path)
			continue
		}
		for _, v := range values {
			vals := fmt.Sprintf(doc, v)
			if d, ok := workerEnumValues[path+"="+v]; ok {
				vals = d
			}
			cases = append(cases, struct{ name, vals string }{fmt.Sprintf("%s=%q", path, v), vals})
		}
	}
	for path := range workerEnums {
		if _, ok := enums[path]; !ok {
			t.Errorf("workerEnums names %s, which the schema has no enum at", path)
		}
	}
	slices.SortFunc(cases, func(a, b struct{ name, vals string }) int { return strings.Compare(a.name, b.name) })
	cases = append(cases, []struct{ name, vals string }{
		{"defaults", ""},
		{"redis URL with TLS and a client certificate", "redis: {url: 'rediss://redis:6380/0', auth: {enabled: true}, tls: {caKey: ca.crt, certKey: client.crt, keyKey: client.key}}\ncredentials: {redisPassword: pw}"},
		{"redis sentinel with TLS", "redis: {url: '', addrs: ['sentinel-0:26379', 'sentinel-1:26379'], sentinelMaster: projector, tls: {enabled: true, caKey: ca.crt}}"},
		{"redis sentinel with ACL users on the master and the Sentinels", "redis: {url: '', addrs: ['sentinel-0:26379'], sentinelMaster: projector, auth: {enabled: true, sentinel: true}}\ncredentials: {redisUsername: projector, redisPassword: pw, redisSentinelUsername: sentinel, redisSentinelPassword: spw}"},
		{"redis cluster with TLS and a client certificate", "redis: {url: '', addrs: ['redis-0:6379', 'redis-1:6379'], cluster: true, tls: {enabled: true, caKey: ca.crt, certKey: client.crt, keyKey: client.key}}"},
		{"kafka mutual TLS", "kafka: {tls: {enabled: true, caKey: ca.crt, certKey: client.crt, keyKey: client.key}}"},
		{"kafka SCRAM over TLS", "kafka: {sasl: {mechanism: SCRAM-SHA-512}, tls: {enabled: true, caKey: ca.crt}}\ncredentials: {kafkaUsername: projector, kafkaPassword: pw}"},
	}...)

	bin := workerBinary(t)
	tlsDir := writeCertificates(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vals := values(t, strings.ReplaceAll(c.vals, "TLSDIR", tlsDir), fmt.Sprintf("tls: {secretName: projector-tls, mountPath: %q}", tlsDir))
			w := container(t, &deployment(t, vals).Spec.Template.Spec, "worker")
			cmd := exec.Command(bin, append(slices.Clone(w.Args), "-check-config")...)
			cmd.Env = append(containerEnv(w), "PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration ok") {
				t.Errorf("the worker refuses what the chart renders (%v):\n%s\nenvironment:\n%s", err, out, strings.Join(cmd.Env, "\n"))
			}
		})
	}
}

// schemaEnums returns every enum of values.schema.json by its JSON pointer
// into the values (properties elided).
func schemaEnums(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var walk func(n any, path string)
	walk = func(n any, path string) {
		m, ok := n.(map[string]any)
		if !ok {
			return
		}
		if e, ok := m["enum"].([]any); ok {
			for _, v := range e {
				out[path] = append(out[path], fmt.Sprint(v))
			}
		}
		if props, ok := m["properties"].(map[string]any); ok {
			for k, v := range props {
				walk(v, path+"/"+k)
			}
		}
		for _, k := range []string{"items", "additionalProperties"} {
			walk(m[k], path+"/*")
		}
		for _, k := range []string{"anyOf", "oneOf", "allOf"} {
			if l, ok := m[k].([]any); ok {
				for _, v := range l {
					walk(v, path)
				}
			}
		}
	}
	walk(schema, "")
	return out
}

var (
	buildWorker    sync.Once
	workerBin      string
	workerBuildErr error
)

// workerBinary builds the billing example, whose worker subcommand is a
// main of the worker runtime like a user's image entrypoint.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildWorker.Do(func() {
		dir, err := os.MkdirTemp("", "charttest-worker")
		if err != nil {
			workerBuildErr = err
			return
		}
		workerBin = filepath.Join(dir, "worker")
		root, _ := filepath.Abs(filepath.Join(chartDir, "..", "..", ".."))
		cmd := exec.Command("go", "build", "-o", workerBin, "./examples/billing")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			workerBuildErr = fmt.Errorf("go build ./examples/billing: %v\n%s", err, out)
		}
	})
	if workerBuildErr != nil {
		t.Fatal(workerBuildErr)
	}
	return workerBin
}

var dependentVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// containerEnv is the container's environment as the kubelet makes it:
// $(VAR) references expanded, Secret keys and pod fields given stand-in
// values.
func containerEnv(c *corev1.Container) []string {
	seen := map[string]string{}
	var env []string
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v = "secret-" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v = "field-" + strings.NewReplacer(".", "-", "[", "", "]", "", "'", "").Replace(e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom != nil:
			v = "ref"
		}
		v = dependentVar.ReplaceAllStringFunc(v, func(ref string) string {
			if s, ok := seen[ref[2:len(ref)-1]]; ok {
				return s
			}
			return ref
		})
		seen[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	return env
}

// writeCertificates writes a CA (ca.crt) and a client certificate
// (client.crt, client.key) into a directory that stands in for the
// mounted TLS Secret.
func writeCertificates(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "charttest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, body := range map[string][]byte{
		"ca.crt": certPEM, "client.crt": certPEM, "token": []byte("header.claims.\n"),
		"client.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSentinelCredentials: redis.auth.sentinel reads the Sentinels' own
// user and password from the credentials Secret, and needs a Sentinel
// setup.
func TestSentinelCredentials(t *testing.T) {
	w := container(t, &deployment(t, values(t, `
redis: {url: '', addrs: ['sentinel-0:26379'], sentinelMaster: projector, auth: {sentinel: true}}
credentials: {redisSentinelUsername: sentinel, redisSentinelPassword: spw}`)).Spec.Template.Spec, "worker")
	env := envMap(w)
	for name, key := range map[string]string{"PROJECTOR_REDIS_SENTINEL_PASSWORD": "redis-sentinel-password", "PROJECTOR_REDIS_SENTINEL_USERNAME": "redis-sentinel-username"} {
		e, ok := env[name]
		if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != key || e.Value != "" {
			t.Errorf("%s = %+v, want it from the Secret's key %s", name, e, key)
		}
	}
	if _, ok := env["PROJECTOR_REDIS_PASSWORD"]; ok {
		t.Error("the master's password is set without redis.auth.enabled")
	}
	if err := renderError(t, values(t, "redis: {auth: {sentinel: true}}\ncredentials: {redisSentinelPassword: spw}")); !strings.Contains(err.Error(), "sentinelMaster") {
		t.Errorf("redis.auth.sentinel without a Sentinel setup: %v", err)
	}
}
