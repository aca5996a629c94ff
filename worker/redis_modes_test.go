package worker

import (
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// haRedis returns the Sentinels, master name and Cluster seeds of
// scripts/ha.sh's servers (the test command starts them); without them the
// test fails under PROJECTOR_REQUIRE_REAL or CI and is skipped otherwise.
func haRedis(t *testing.T) (sentinels []string, master string, cluster []string) {
	t.Helper()
	sentinels = splitList(os.Getenv("PROJECTOR_HA_REDIS_SENTINELS"))
	master = os.Getenv("PROJECTOR_HA_REDIS_MASTER_NAME")
	for _, node := range splitList(os.Getenv("PROJECTOR_HA_REDIS_CLUSTER")) {
		_, addr, _ := strings.Cut(node, "=") // "1=127.0.0.1:21400"
		cluster = append(cluster, addr)
	}
	if len(sentinels) == 0 || master == "" || len(cluster) == 0 {
		msg := "needs scripts/ha.sh's Redis Sentinel and Cluster (PROJECTOR_HA_REDIS_SENTINELS, _MASTER_NAME, _CLUSTER unset; scripts/test.sh starts them unless PROJECTOR_NO_HA=1)"
		if os.Getenv("PROJECTOR_REQUIRE_REAL") != "" || os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return sentinels, master, cluster
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

// A worker reaches Redis through Sentinel (master name and Sentinel
// addresses) and on a Redis Cluster (seed addresses), configured by the
// PROJECTOR_REDIS_* variables alone, on the real servers: it becomes ready
// (group joined, Redis answering) and applies what is on the topic.
func TestWorkerOnRedisSentinelAndCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs workers on real servers")
	}
	sentinels, master, cluster := haRedis(t)
	kafka := testenv.Kafka(t)
	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		{"sentinel", map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(sentinels, ","), "PROJECTOR_REDIS_SENTINEL_MASTER": master}},
		{"cluster", map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(cluster, ","), "PROJECTOR_REDIS_CLUSTER": "yes"}},
	} {
		t.Run(c.name, func(t *testing.T) { runOrdersWorker(t, kafka, c.env) })
	}
}

// runOrdersWorker runs a worker with env on top of cleared PROJECTOR_*
// variables, Kafka and the topic's settings, waits until it is ready and
// has applied both events of the topic, and stops it.
func runOrdersWorker(t *testing.T, kafka *testenv.KafkaEnv, env map[string]string) {
	t.Helper()
	w := startOrdersWorker(t, kafka, env)
	if err := w.stop(); err != nil {
		t.Errorf("Run: %v\n%s", err, w.stderr.String())
	}
}

// ordersWorker is a worker started by startOrdersWorker.
type ordersWorker struct {
	base   string      // its HTTP server
	stderr *syncBuffer // its log
	stop   func() error
}

// startOrdersWorker is runOrdersWorker without the stop: the worker runs
// until the test calls stop (or ends).
func startOrdersWorker(t *testing.T, kafka *testenv.KafkaEnv, env map[string]string) *ordersWorker {
	t.Helper()
	clearEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	topic := kafka.TopicName(t, "orders")
	projection := "orders-" + strings.ReplaceAll(topic, ".", "-")
	events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: kafka.Seeds, Topic: topic, Partitions: 2, ReplicationFactor: 1, Guard: appendguard.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	if _, err := events.Append(ctx, "process/acme/1", framework.NoStream, []framework.EventData{{Type: "Ordered"}, {Type: "Ordered"}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PROJECTOR_KAFKA_BROKERS", strings.Join(kafka.Seeds, ","))
	t.Setenv("PROJECTOR_TOPIC", topic)
	t.Setenv("PROJECTOR_PROJECTION", projection)
	t.Setenv("PROJECTOR_REDIS_NAMESPACE", "worker-test")
	t.Setenv("PROJECTOR_KAFKA_SESSION_TIMEOUT", "6s")
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout, stderr syncBuffer
	built := make(chan *redischeckpoint.AtomicProjection, 1)
	opts := Options{Name: "orders", Stdout: &stdout, Stderr: &stderr,
		Setup: func(_ context.Context, w *Worker) (Projection, error) {
			p, err := w.Store.NewAtomicProjection(w.Config.Projection, func(e framework.Event, w *redischeckpoint.Writes) error {
				w.HIncrBy(w.Key("orders"), e.StreamID, 1)
				return nil
			})
			if err == nil {
				built <- p
			}
			return Versioned(p), err
		}}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"-http", "127.0.0.1:0"}, opts) }()
	var base string
	for addr := regexp.MustCompile(`on (http://\S+)`); base == ""; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the worker ended early: %v\n%s", err, stderr.String())
		default:
		}
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
	}
	var p *redischeckpoint.AtomicProjection
	select {
	case p = <-built:
	case <-ctx.Done():
		t.Fatalf("Setup did not run\n%s", stderr.String())
	}
	for {
		code, _, err := get(ctx, base+"/readyz")
		if err == nil && code == 200 {
			if n, _ := p.Client().HGet(ctx, p.Key("orders"), "process/acme/1").Int(); n == 2 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("not ready with both events applied: %d %v\n%s", code, err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &ordersWorker{base: base, stderr: &stderr, stop: stop}
}

// A worker on the TLS-only Redis set of scripts/ha.sh, in each mode, with
// an ACL user whose password comes from PROJECTOR_REDIS_PASSWORD alone and
// the set's CA: standalone (a rediss:// URL to the master), Sentinel (TLS
// to the Sentinels and to the master they name, each with its own ACL
// user) and Cluster (which requires a client certificate). Each applies
// every event. Then the negative controls: a wrong CA, no TLS, no client
// certificate for the Cluster, and a wrong Sentinel password each fail with
// an error that says so and shows no password.
func TestWorkerOnRedisTLSWithACLUser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs workers on real servers")
	}
	r := testenv.HARedisTLSEnv(t)
	kafka := testenv.Kafka(t)
	acl := map[string]string{"PROJECTOR_REDIS_USERNAME": r.Username, "PROJECTOR_REDIS_PASSWORD": r.Password}
	with := func(maps ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range maps {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	standalone := with(acl, map[string]string{"PROJECTOR_REDIS_URL": "rediss://" + r.Addr + "/0", "PROJECTOR_REDIS_TLS_CA_FILE": r.CAFile})
	sentinel := with(acl, map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(r.Sentinels, ","),
		"PROJECTOR_REDIS_SENTINEL_MASTER": r.MasterName, "PROJECTOR_REDIS_TLS": "yes", "PROJECTOR_REDIS_TLS_CA_FILE": r.CAFile,
		"PROJECTOR_REDIS_SENTINEL_USERNAME": r.SentinelUsername, "PROJECTOR_REDIS_SENTINEL_PASSWORD": r.SentinelPassword})
	cluster := with(acl, map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(r.Cluster, ","), "PROJECTOR_REDIS_CLUSTER": "yes",
		"PROJECTOR_REDIS_TLS": "yes", "PROJECTOR_REDIS_TLS_CA_FILE": r.CAFile,
		"PROJECTOR_REDIS_TLS_CERT_FILE": r.CertFile, "PROJECTOR_REDIS_TLS_KEY_FILE": r.KeyFile})
	for _, c := range []struct {
		name string
		env  map[string]string
	}{{"standalone", standalone}, {"sentinel", sentinel}, {"cluster", cluster}} {
		t.Run(c.name, func(t *testing.T) { runOrdersWorker(t, kafka, c.env) })
	}

	foreign := testenv.ForeignCA(t)
	secrets := []string{r.Password, r.SentinelPassword}
	for _, c := range []struct {
		name string
		env  map[string]string
		want *regexp.Regexp
	}{
		{"standalone with a wrong CA", with(standalone, map[string]string{"PROJECTOR_REDIS_TLS_CA_FILE": foreign}),
			regexp.MustCompile(`certificate signed by unknown authority`)},
		{"sentinel with a wrong CA", with(sentinel, map[string]string{"PROJECTOR_REDIS_TLS_CA_FILE": foreign}),
			regexp.MustCompile(`certificate signed by unknown authority`)},
		{"cluster with a wrong CA", with(cluster, map[string]string{"PROJECTOR_REDIS_TLS_CA_FILE": foreign}),
			regexp.MustCompile(`certificate signed by unknown authority`)},
		// A plaintext client on a TLS-only port: the server drops it.
		{"standalone without TLS", with(standalone, map[string]string{"PROJECTOR_REDIS_URL": "redis://" + r.Addr + "/0", "PROJECTOR_REDIS_TLS_CA_FILE": ""}),
			regexp.MustCompile(`EOF|connection reset|broken pipe`)},
		{"cluster without a client certificate", with(cluster, map[string]string{"PROJECTOR_REDIS_TLS_CERT_FILE": "", "PROJECTOR_REDIS_TLS_KEY_FILE": ""}),
			regexp.MustCompile(`certificate required|bad certificate|EOF|connection reset`)},
		{"sentinel with a wrong Sentinel password", with(sentinel, map[string]string{"PROJECTOR_REDIS_SENTINEL_PASSWORD": "not-" + r.SentinelPassword}),
			regexp.MustCompile(`WRONGPASS|invalid username-password`)},
		{"standalone with a wrong password", with(standalone, map[string]string{"PROJECTOR_REDIS_PASSWORD": "not-" + r.Password}),
			regexp.MustCompile(`WRONGPASS|invalid username-password`)},
	} {
		t.Run(c.name, func(t *testing.T) { workerFailsOnRedis(t, kafka, c.env, c.want, secrets) })
	}
}

// workerFailsOnRedis runs a worker with env and expects Redis to fail it:
// Run ends with an error, or /readyz keeps refusing; the error it shows
// (the /readyz body, the log, Run's error) must match want and contain
// none of secrets (nor a password given in env).
func workerFailsOnRedis(t *testing.T, kafka *testenv.KafkaEnv, env map[string]string, want *regexp.Regexp, secrets []string) {
	t.Helper()
	clearEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	topic := kafka.TopicName(t, "orders")
	t.Setenv("PROJECTOR_KAFKA_BROKERS", strings.Join(kafka.Seeds, ","))
	t.Setenv("PROJECTOR_TOPIC", topic)
	t.Setenv("PROJECTOR_PROJECTION", "orders-"+strings.ReplaceAll(topic, ".", "-"))
	t.Setenv("PROJECTOR_REDIS_NAMESPACE", "worker-test")
	for k, v := range env {
		t.Setenv(k, v)
	}
	secrets = append(secrets, env["PROJECTOR_REDIS_PASSWORD"], env["PROJECTOR_REDIS_SENTINEL_PASSWORD"])
	var stdout, stderr syncBuffer
	opts := Options{Name: "orders", Stdout: &stdout, Stderr: &stderr,
		Setup: func(_ context.Context, w *Worker) (Projection, error) {
			p, err := w.Store.NewAtomicProjection(w.Config.Projection, func(e framework.Event, w *redischeckpoint.Writes) error {
				w.HIncrBy(w.Key("orders"), e.StreamID, 1)
				return nil
			})
			return Versioned(p), err
		}}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"-http", "127.0.0.1:0"}, opts) }()
	addr := regexp.MustCompile(`on (http://\S+)`)
	var shown string
	for {
		var runErr error
		select {
		case runErr = <-done:
			done <- runErr
		default:
		}
		shown = stderr.String()
		if runErr != nil {
			shown += "\nRun: " + runErr.Error()
		}
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			code, body, err := get(ctx, m[1]+"/readyz")
			if err == nil && code == 200 {
				t.Fatalf("ready, want a Redis failure\n%s", shown)
			}
			shown += "\n/readyz: " + string(body)
		}
		if want.MatchString(shown) {
			break
		}
		if runErr != nil || ctx.Err() != nil {
			t.Fatalf("the failure does not match %q:\n%s", want, shown)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(shown, s) {
			t.Fatalf("a password shows in the failure:\n%s", shown)
		}
	}
	for _, line := range strings.Split(shown, "\n") {
		if want.MatchString(line) {
			t.Logf("fails as it should: %s", line)
			break
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		t.Fatal("the worker did not end after its context")
	}
}
