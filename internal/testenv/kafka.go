package testenv

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv/kafkaprobe"
)

// KafkaEnv is a Kafka cluster for tests. It is shared by every test in the binary: isolate
// with Topic and with group names derived from t.Name().
type KafkaEnv struct {
	Seeds []string
	// Real is true for an Apache Kafka broker, false for the kfake fake.
	Real bool
	// Kind says where the cluster came from: KindEnv, KindTestcontainers or KindKfake.
	Kind string
	// Info is what the cluster announced when it was first reached: cluster ID and the Kafka
	// release its API versions match.
	Info kafkaprobe.Info
	// Secure is the cluster's SASL_SSL listener (SCRAM over TLS), or nil when there is none.
	// Only the env source fills it: scripts/test.sh and scripts/infra.sh start the broker with
	// one. Containers and kfake have none.
	Secure *SecureListener
	// MTLS is the cluster's SSL listener that requires a client certificate, or nil; OAuth
	// its SASL_SSL listener with OAUTHBEARER, or nil. Only the env source fills them.
	MTLS  *MTLSListener
	OAuth *OAuthListener
}

// MTLSListener is an SSL listener of the same cluster with ssl.client.auth=required: TLS
// with a certificate signed by the CA in CAFile, and the client certificate in CertFile and
// KeyFile (signed by the same CA, CN=projector-client).
type MTLSListener struct {
	Seeds                     []string
	CAFile, CertFile, KeyFile string
}

// OAuthListener is a SASL_SSL listener of the same cluster with OAUTHBEARER and Kafka's
// unsecured JWT validator: any {"alg":"none"} token with sub, iat and exp is accepted until
// its exp (see UnsecuredJWT). Sessions last at most Reauth (connections.max.reauth.ms), so
// clients re-authenticate at least that often.
type OAuthListener struct {
	Seeds  []string
	CAFile string
	Reauth time.Duration
}

// UnsecuredJWT returns an unsecured JWT (header {"alg":"none"}, base64url, empty signature)
// for sub, issued now and expiring at exp, as Kafka's unsecured validator accepts it.
func UnsecuredJWT(sub string, exp time.Time) string {
	enc := base64.RawURLEncoding
	claims := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, sub, time.Now().Unix(), exp.Unix())
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(claims)) + "."
}

// authListenersFromEnv reads the mTLS and OAUTHBEARER listeners from the environment: nil
// when their seeds are unset, an error when the seeds are set but the rest is incomplete.
func authListenersFromEnv() (*MTLSListener, *OAuthListener, error) {
	var m *MTLSListener
	var o *OAuthListener
	ca := os.Getenv(EnvKafkaCAFile)
	if seeds := os.Getenv(EnvKafkaMTLSSeeds); seeds != "" {
		m = &MTLSListener{Seeds: strings.Split(seeds, ","), CAFile: ca,
			CertFile: os.Getenv(EnvKafkaClientCertFile), KeyFile: os.Getenv(EnvKafkaClientKeyFile)}
		for _, f := range []struct{ name, val string }{
			{EnvKafkaCAFile, m.CAFile}, {EnvKafkaClientCertFile, m.CertFile}, {EnvKafkaClientKeyFile, m.KeyFile},
		} {
			if f.val == "" {
				return nil, nil, fmt.Errorf("%s is set but %s is not", EnvKafkaMTLSSeeds, f.name)
			}
			if _, err := os.Stat(f.val); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	if seeds := os.Getenv(EnvKafkaOAuthSeeds); seeds != "" {
		if ca == "" {
			return nil, nil, fmt.Errorf("%s is set but %s is not", EnvKafkaOAuthSeeds, EnvKafkaCAFile)
		}
		o = &OAuthListener{Seeds: strings.Split(seeds, ","), CAFile: ca, Reauth: 10 * time.Second}
		if v := os.Getenv(EnvKafkaOAuthReauthMS); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				return nil, nil, fmt.Errorf("%s=%q is not a positive number of milliseconds", EnvKafkaOAuthReauthMS, v)
			}
			o.Reauth = time.Duration(ms) * time.Millisecond
		}
	}
	return m, o, nil
}

// SecureListener is a SASL_SSL listener of the same cluster: TLS with a certificate signed by
// the CA in CAFile (valid for 127.0.0.1 and localhost), and SCRAM-SHA-256 and SCRAM-SHA-512
// for Username/Password.
type SecureListener struct {
	Seeds    []string
	Username string
	Password string
	// CAFile is the PEM file of the only CA that signed the listener's certificate.
	CAFile string
}

// secureFromEnv reads the SASL_SSL listener from the environment: nil when
// PROJECTOR_KAFKA_SASL_SSL_SEEDS is unset, an error when it is set but the rest is incomplete.
func secureFromEnv() (*SecureListener, error) {
	seeds := os.Getenv(EnvKafkaSASLSSLSeeds)
	if seeds == "" {
		return nil, nil
	}
	s := &SecureListener{
		Seeds:    strings.Split(seeds, ","),
		Username: os.Getenv(EnvKafkaSCRAMUser),
		Password: os.Getenv(EnvKafkaSCRAMPassword),
		CAFile:   os.Getenv(EnvKafkaCAFile),
	}
	var missing []string
	for _, v := range []struct{ name, val string }{
		{EnvKafkaSCRAMUser, s.Username}, {EnvKafkaSCRAMPassword, s.Password}, {EnvKafkaCAFile, s.CAFile},
	} {
		if v.val == "" {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s is set but %s is not", EnvKafkaSASLSSLSeeds, strings.Join(missing, ", "))
	}
	if _, err := os.Stat(s.CAFile); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvKafkaCAFile, err)
	}
	return s, nil
}

var (
	kafkaOnce sync.Once
	kafkaEnv  KafkaEnv
	kafkaErr  error
)

// Kafka returns the test binary's Kafka cluster, finding or starting it on first use (see the
// package documentation for the order). It fails the test when none can be had, and when only
// the fake is left but RequireReal is set.
func Kafka(t testing.TB) *KafkaEnv {
	t.Helper()
	kafkaOnce.Do(func() { kafkaEnv, kafkaErr = findKafka() })
	if kafkaErr != nil {
		t.Fatalf("testenv: no Kafka: %v", kafkaErr)
	}
	if !kafkaEnv.Real {
		announceFake(t, fakeBanner("Kafka", "kfake", "no "+EnvKafkaSeeds+" and no Docker"))
	}
	env := kafkaEnv
	env.Seeds = append([]string(nil), kafkaEnv.Seeds...)
	if kafkaEnv.Secure != nil {
		secure := *kafkaEnv.Secure
		secure.Seeds = append([]string(nil), kafkaEnv.Secure.Seeds...)
		env.Secure = &secure
	}
	if kafkaEnv.MTLS != nil {
		m := *kafkaEnv.MTLS
		m.Seeds = append([]string(nil), m.Seeds...)
		env.MTLS = &m
	}
	if kafkaEnv.OAuth != nil {
		o := *kafkaEnv.OAuth
		o.Seeds = append([]string(nil), o.Seeds...)
		env.OAuth = &o
	}
	return &env
}

func findKafka() (KafkaEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if seeds := os.Getenv(EnvKafkaSeeds); seeds != "" {
		env := KafkaEnv{Seeds: strings.Split(seeds, ","), Kind: KindEnv}
		secure, err := secureFromEnv()
		if err != nil {
			return KafkaEnv{}, err
		}
		env.Secure = secure
		if env.MTLS, env.OAuth, err = authListenersFromEnv(); err != nil {
			return KafkaEnv{}, err
		}
		wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
		defer cancelWait()
		info, err := kafkaprobe.Wait(wait, env.Seeds)
		if err != nil {
			return KafkaEnv{}, fmt.Errorf("%s=%s does not answer: %w", EnvKafkaSeeds, seeds, err)
		}
		env.Info, env.Real = info, !info.IsKfake()
		if !env.Real && RequireReal() {
			return KafkaEnv{}, fmt.Errorf("%s=%s is a kfake cluster but %s: %s", EnvKafkaSeeds, seeds, requireRealWhy(), howToRunReal)
		}
		return env, nil
	}

	ok, why := dockerHealthy()
	if ok {
		seeds, err := startKafkaContainer(ctx)
		if err != nil {
			return KafkaEnv{}, fmt.Errorf("docker is healthy but the Kafka container failed: %w", err)
		}
		info, err := kafkaprobe.Wait(ctx, seeds)
		if err != nil {
			return KafkaEnv{}, fmt.Errorf("Kafka container: %w", err)
		}
		return KafkaEnv{Seeds: seeds, Real: true, Kind: KindTestcontainers, Info: info}, nil
	}

	if RequireReal() {
		return KafkaEnv{}, fmt.Errorf("a real Kafka is required (%s) but %s is unset and Docker is unavailable (%v); "+
			"refusing to fall back to kfake: %s", requireRealWhy(), EnvKafkaSeeds, why, howToRunReal)
	}

	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(3),
		// KIP-848 members sit idle with the default heartbeat interval.
		kfake.BrokerConfigs(map[string]string{"group.consumer.heartbeat.interval.ms": "500"}),
	)
	if err != nil {
		return KafkaEnv{}, fmt.Errorf("kfake: %w", err)
	}
	onShutdown(cluster.Close)
	seeds := cluster.ListenAddrs()
	info, err := kafkaprobe.Wait(ctx, seeds)
	if err != nil {
		return KafkaEnv{}, fmt.Errorf("kfake: %w", err)
	}
	return KafkaEnv{Seeds: seeds, Real: false, Kind: KindKfake, Info: info}, nil
}

func requireRealWhy() string {
	if os.Getenv(EnvRequireReal) == "1" {
		return EnvRequireReal + "=1"
	}
	return "CI=true"
}

// Client returns a client for the cluster, closed when the test ends. Options are appended
// to the seed brokers, so they may override anything.
func (e *KafkaEnv) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Seeds...)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client for the cluster, closed when the test ends.
func (e *KafkaEnv) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(e.Client(t))
}

// Topic creates a topic with 3 partitions whose name is unique to this test and run (the
// test's name, name and a random suffix), and deletes it when the test ends.
func (e *KafkaEnv) Topic(t testing.TB, name string) string {
	t.Helper()
	return e.CreateTopic(t, name, 3, nil)
}

// CreateTopic is Topic with a partition count and topic configs (for example
// "cleanup.policy": "compact"). It waits until every partition has a leader.
func (e *KafkaEnv) CreateTopic(t testing.TB, name string, partitions int32, configs map[string]*string) string {
	t.Helper()
	topic := uniqueName(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Seeds...))
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("testenv: create topic %s: %v", topic, err)
	}
	// Cleanup uses its own client: the test's clients are closed by then.
	t.Cleanup(func() { e.deleteTopic(t, topic) })

	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) == int(partitions) && allLed(td) {
				return topic
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: topic %s has no leader for every partition after 30s (last error: %v)", topic, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(td kadm.TopicDetail) bool {
	for _, p := range td.Partitions {
		if p.Leader < 0 || p.Err != nil {
			return false
		}
	}
	return true
}

func (e *KafkaEnv) deleteTopic(t testing.TB, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Seeds...))
	if err != nil {
		t.Logf("testenv: delete topic %s: %v", topic, err)
		return
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("testenv: delete topic %s: %v", topic, err)
	}
}

// TopicName returns a topic name unique to this test and run without
// creating the topic, for code that creates its own topics. When the test
// ends every topic whose name starts with it (so also "<name>.catalog") is
// deleted.
func (e *KafkaEnv) TopicName(t testing.TB, name string) string {
	t.Helper()
	topic := uniqueName(t, name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Seeds...))
		if err != nil {
			t.Logf("testenv: list topics: %v", err)
			return
		}
		defer cl.Close()
		topics, err := kadm.NewClient(cl).ListTopics(ctx)
		if err != nil {
			t.Logf("testenv: list topics: %v", err)
			return
		}
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, topic) {
				e.deleteTopic(t, name)
			}
		}
	})
	return topic
}
