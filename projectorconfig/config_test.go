package projectorconfig

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// env is a fake environment.
type env map[string]string

func (e env) lookup(name string) (string, bool) { v, ok := e[name]; return v, ok }

func newSet(e env, vars ...Var) *Set {
	if len(vars) == 0 {
		vars = Worker()
	}
	s := NewSet(vars...)
	s.SetLookupEnv(e.lookup)
	return s
}

func parse(t *testing.T, s *Set, args ...string) *flag.FlagSet {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	s.Bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return fs
}

func TestParseBool(t *testing.T) {
	for _, in := range []string{"1", "t", "T", "true", "TRUE", "True", "yes", "YES", "Yes", "on", "ON", " true "} {
		if b, err := ParseBool(in); err != nil || !b {
			t.Errorf("ParseBool(%q) = %v, %v; want true", in, b, err)
		}
	}
	for _, in := range []string{"0", "f", "F", "false", "FALSE", "no", "No", "off", "OFF"} {
		if b, err := ParseBool(in); err != nil || b {
			t.Errorf("ParseBool(%q) = %v, %v; want false", in, b, err)
		}
	}
	for _, in := range []string{"", "maybe", "2", "yess", "enable"} {
		if _, err := ParseBool(in); err == nil {
			t.Errorf("ParseBool(%q) accepted", in)
		}
	}
}

func TestPrecedence(t *testing.T) {
	s := newSet(env{"PROJECTOR_TOPIC": "from-env", "PROJECTOR_GROUP": "", "PROJECTOR_PROJECTION": "p-env"})
	parse(t, s, "-projection", "p-flag")
	if got := s.String(Topic); got != "from-env" || s.Source(Topic) != "PROJECTOR_TOPIC" {
		t.Errorf("topic %q from %s, want the variable's", got, s.Source(Topic))
	}
	if got := s.String(Projection); got != "p-flag" || s.Source(Projection) != "-projection" {
		t.Errorf("projection %q from %s, want the flag's", got, s.Source(Projection))
	}
	// An empty variable is unset: the default holds.
	if s.IsSet(Group) || s.String(HTTPAddr) != ":8080" || s.Source(HTTPAddr) != "default" {
		t.Errorf("group set %v, http %q from %s", s.IsSet(Group), s.String(HTTPAddr), s.Source(HTTPAddr))
	}
	s.SetDefault(HTTPAddr, ":9090")
	if s.String(HTTPAddr) != ":9090" {
		t.Errorf("SetDefault: %q", s.String(HTTPAddr))
	}
}

func TestConfig(t *testing.T) {
	s := newSet(env{
		"PROJECTOR_KAFKA_BROKERS": " a:9092, ,b:9092 ", "PROJECTOR_KAFKA_TLS": "YES", "PROJECTOR_KAFKA_SASL_MECHANISM": "scram-sha-512",
		"PROJECTOR_KAFKA_USERNAME": "u", "PROJECTOR_KAFKA_PASSWORD": "pw", "PROJECTOR_REDIS_WAIT_REPLICAS": "2",
		"PROJECTOR_SHUTDOWN_TIMEOUT": "45s", "PROJECTOR_LOG_LEVEL": "warn", "PROJECTOR_PROJECTION": "orders",
		"PROJECTOR_LOG_FORMAT": "JSON", "PROJECTOR_KAFKA_INSTANCE_ID": "orders-7d9f-x2x", "PROJECTOR_KAFKA_GROUP_PROTOCOL": "Consumer",
	})
	parse(t, s, "-redis", "redis://r:6379/0", "-namespace", "ns")
	c, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Brokers: []string{"a:9092", "b:9092"}, KafkaSASLMechanism: "SCRAM-SHA-512", KafkaUsername: "u", KafkaPassword: "pw", KafkaTLS: true,
		KafkaSessionTimeout: 6 * time.Second, KafkaInstanceID: "orders-7d9f-x2x", KafkaGroupProtocol: "consumer", RedisURL: "redis://r:6379/0", RedisNamespace: "ns", RedisWaitReplicas: 2,
		Projection: "orders", HTTPAddr: ":8080", ShutdownTimeout: 45 * time.Second, LogLevel: slog.LevelWarn, LogFormat: "json",
		TraceEventSpans: "sampled"}
	if !slices.Equal(c.Brokers, want.Brokers) {
		t.Errorf("brokers %q", c.Brokers)
	}
	c.Brokers, want.Brokers = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Config\n got %+v\nwant %+v", c, want)
	}
	if c.ConsumerGroup() != "orders" {
		t.Errorf("group %q", c.ConsumerGroup())
	}
	// A CA file implies TLS.
	s = newSet(env{"PROJECTOR_KAFKA_TLS_CA_FILE": "/ca.pem"})
	if c, err := s.Config(); err != nil || !c.KafkaTLS {
		t.Errorf("CA file: TLS %v, %v", c.KafkaTLS, err)
	}
}

// TestBoolSyntaxEverywhere: the same words from a flag and from a variable,
// and an invalid one is an error naming its source, never false.
func TestBoolSyntaxEverywhere(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want bool
		bad  string
	}{
		{env: "yes", want: true},
		{env: "Off", want: false},
		{args: []string{"-kafka-tls"}, want: true},
		{env: "true", args: []string{"-kafka-tls=no"}, want: false},
		{env: "maybe", bad: `PROJECTOR_KAFKA_TLS="maybe": want true or false`},
		{args: []string{"-kafka-tls=sometimes"}, bad: `-kafka-tls "sometimes" (PROJECTOR_KAFKA_TLS): want true or false`},
	} {
		s := newSet(env{"PROJECTOR_KAFKA_TLS": tc.env})
		parse(t, s, tc.args...)
		c, err := s.Config()
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("env %q args %q: %v, want %q", tc.env, tc.args, err, tc.bad)
			}
			continue
		}
		if err != nil || c.KafkaTLS != tc.want {
			t.Errorf("env %q args %q: TLS %v, %v; want %v", tc.env, tc.args, c.KafkaTLS, err, tc.want)
		}
	}
}

func TestErrorsJoinedAndNamed(t *testing.T) {
	s := newSet(env{"PROJECTOR_SHUTDOWN_TIMEOUT": "soon", "PROJECTOR_LOG_LEVEL": "loud", "PROJECTOR_KAFKA_SASL_MECHANISM": "GSSAPI"})
	parse(t, s, "-redis-wait-replicas", "-1", "-kafka-session-timeout", "0s", "-kafka-group-protocol", "eager")
	_, err := s.Config()
	for _, want := range []string{"PROJECTOR_SHUTDOWN_TIMEOUT=\"soon\"", "PROJECTOR_LOG_LEVEL=\"loud\"", "-redis-wait-replicas \"-1\" (PROJECTOR_REDIS_WAIT_REPLICAS)",
		"-kafka-session-timeout \"0s\"", "-kafka-group-protocol \"eager\"", "PROJECTOR_KAFKA_SASL_MECHANISM=\"GSSAPI\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%T is not an *Error", err)
	}
	// SASL without a password is named, without a value.
	s = newSet(env{"PROJECTOR_KAFKA_SASL_MECHANISM": "PLAIN", "PROJECTOR_KAFKA_USERNAME": "u"})
	if _, err := s.Config(); err == nil || !strings.Contains(err.Error(), "PROJECTOR_KAFKA_PASSWORD") {
		t.Errorf("SASL without password: %v", err)
	}
}

// TestSecretsNeverShown: passwords and credentialed URLs appear neither in
// -h nor in errors; their flags are not bound by Bind.
func TestSecretsNeverShown(t *testing.T) {
	const pw = "s3cr3t-value"
	e := env{"PROJECTOR_KAFKA_PASSWORD": pw, "PROJECTOR_REDIS_PASSWORD": pw, "PROJECTOR_REDIS_URL": "redis://user:" + pw + "@redis:6379/0"}
	s := newSet(e)
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	s.Bind(fs)
	if fs.Lookup("kafka-password") != nil || fs.Lookup("redis-password") != nil {
		t.Error("Bind defined a password flag")
	}
	fs.PrintDefaults()
	if strings.Contains(help.String(), pw) {
		t.Errorf("help shows the secret:\n%s", help.String())
	}
	if !strings.Contains(help.String(), "(from PROJECTOR_REDIS_URL)") {
		t.Errorf("help does not say where the URL comes from:\n%s", help.String())
	}
	if d := s.Display(RedisURL); d != "(from PROJECTOR_REDIS_URL)" {
		t.Errorf("Display(RedisURL) = %q", d)
	}
	if err := s.Invalid(KafkaPassword, "something"); strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "hidden") {
		t.Errorf("Invalid shows the secret: %v", err)
	}

	// BindAll binds them, still without showing the variable's value.
	s = newSet(e)
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	help.Reset()
	fs.SetOutput(&help)
	s.BindAll(fs)
	fs.PrintDefaults()
	if fs.Lookup("kafka-password") == nil || strings.Contains(help.String(), pw) || !strings.Contains(help.String(), "(from PROJECTOR_KAFKA_PASSWORD)") {
		t.Errorf("BindAll help:\n%s", help.String())
	}
	if err := fs.Parse([]string{"-kafka-password", "other"}); err != nil || s.String(KafkaPassword) != "other" {
		t.Errorf("-kafka-password: %q, %v", s.String(KafkaPassword), err)
	}

	// A URL without a password is shown.
	s = newSet(env{"PROJECTOR_REDIS_URL": "rediss://billing@redis:6380/0"})
	if d := s.Display(RedisURL); d != "rediss://billing@redis:6380/0" {
		t.Errorf("Display = %q", d)
	}
}

func TestHelpNamesVariablesAndDefaults(t *testing.T) {
	s := newSet(env{"PROJECTOR_TOPIC": "orders"})
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	s.Bind(fs)
	fs.PrintDefaults()
	for _, want := range []string{"(PROJECTOR_KAFKA_BROKERS)", "-topic", "(default orders)", "(default :8080)", "-redis-url", "old name of -redis-url"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
}

// TestFlagsForPflag: the accessor list has one entry per flag and alias,
// with the pflag Type and the bool marker.
func TestFlagsForPflag(t *testing.T) {
	s := newSet(env{})
	byName := map[string]Flag{}
	for _, f := range s.Flags() {
		byName[f.Name] = f
	}
	for _, v := range Worker() {
		f, ok := byName[v.Flag]
		if !ok {
			t.Errorf("no flag %s", v.Flag)
			continue
		}
		if f.Bool != (v.Kind == Bool) || f.Secret != v.Secret || !strings.Contains(f.Usage, v.Env) {
			t.Errorf("flag %+v for %+v", f, v)
		}
	}
	if f := byName["kafka-tls"]; f.Value.Type() != "bool" || !f.Value.IsBoolFlag() {
		t.Errorf("kafka-tls: type %s", f.Value.Type())
	}
	if f := byName["redis"]; f.AliasOf != "redis-url" {
		t.Errorf("redis alias: %+v", f)
	}
	if err := byName["kafka-tls"].Value.Set("on"); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Bool(KafkaTLS); !b || err != nil {
		t.Errorf("set through Flags: %v, %v", b, err)
	}
}

// TestTable keeps the table consistent: every variable is PROJECTOR_*, no
// flag or variable twice (NewSet panics), and what the chart and the
// programs rely on.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Worker() {
		if !strings.HasPrefix(v.Env, "PROJECTOR_") || v.Help == "" {
			t.Errorf("%+v", v)
		}
		if seen[v.Env] {
			t.Errorf("%s twice", v.Env)
		}
		seen[v.Env] = true
		if v.Kind == Bool {
			if _, err := ParseBool(v.Default); err != nil {
				t.Errorf("%s default %q", v.Env, v.Default)
			}
		}
		if v.Secret && v.Default != "" {
			t.Errorf("%s: a secret with a default", v.Env)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a duplicate flag did not panic")
			}
		}()
		NewSet(Topic, Var{Env: "PROJECTOR_OTHER", Flag: "topic", Help: "x"})
	}()
}

// The Sentinels' own credentials reach Config, their password stays out
// of -h and of errors, and they make sense only with a master name.
func TestSentinelCredentials(t *testing.T) {
	const pw = "s3ntinel-secret"
	s := newSet(env{"PROJECTOR_REDIS_ADDRS": "s1:26379,s2:26379", "PROJECTOR_REDIS_SENTINEL_MASTER": "m",
		"PROJECTOR_REDIS_SENTINEL_USERNAME": "watcher", "PROJECTOR_REDIS_SENTINEL_PASSWORD": pw})
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	s.Bind(fs)
	if fs.Lookup("redis-sentinel-password") != nil || fs.Lookup("redis-sentinel-username") == nil {
		t.Error("Bind: want -redis-sentinel-username and no password flag")
	}
	fs.PrintDefaults()
	if strings.Contains(help.String(), pw) {
		t.Errorf("help shows the Sentinel password:\n%s", help.String())
	}
	c, err := s.Config()
	if err != nil || c.RedisSentinelUsername != "watcher" || c.RedisSentinelPassword != pw {
		t.Errorf("Config = %q %q, %v", c.RedisSentinelUsername, c.RedisSentinelPassword, err)
	}
	s = newSet(env{"PROJECTOR_REDIS_ADDRS": "r:6379", "PROJECTOR_REDIS_SENTINEL_PASSWORD": pw})
	if _, err := s.Config(); err == nil || !strings.Contains(err.Error(), "need -redis-sentinel-master") || strings.Contains(err.Error(), pw) {
		t.Errorf("Sentinel password without a master name: %v", err)
	}
}
