package projectorconfig

import (
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Config is the table's settings, typed and checked. Fields whose Var is
// not in the Set keep their zero value.
type Config struct {
	Brokers []string
	Topic   string
	// Group is the consumer group as given; "" means the projection's
	// name (see ConsumerGroup).
	Group string

	// KafkaSASLMechanism is "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or
	// OAUTHBEARER (upper case).
	KafkaSASLMechanism string
	KafkaUsername      string
	KafkaPassword      string
	// KafkaOAuthTokenFile is the OAUTHBEARER token's file (only with
	// that mechanism).
	KafkaOAuthTokenFile string
	// KafkaTLS is true when PROJECTOR_KAFKA_TLS says so or a CA file is
	// given.
	KafkaTLS            bool
	KafkaTLSCAFile      string
	KafkaTLSCertFile    string
	KafkaTLSKeyFile     string
	KafkaSessionTimeout time.Duration
	// KafkaInstanceID is the group.instance.id; "" is dynamic membership.
	KafkaInstanceID string
	// KafkaGroupProtocol is "classic" or "consumer" (KIP-848).
	KafkaGroupProtocol string

	RedisURL string
	// RedisAddrs replace RedisURL: Cluster seeds (RedisCluster) or
	// Sentinels (RedisSentinelMaster), else one server.
	RedisAddrs          []string
	RedisSentinelMaster string
	// RedisSentinelUsername and RedisSentinelPassword authenticate to the
	// Sentinels; RedisUsername and RedisPassword to the master.
	RedisSentinelUsername string
	RedisSentinelPassword string
	RedisCluster          bool
	// RedisTLS is true when PROJECTOR_REDIS_TLS says so or a CA file or
	// client certificate is given.
	RedisTLS          bool
	RedisTLSCertFile  string
	RedisTLSKeyFile   string
	RedisUsername     string
	RedisPassword     string
	RedisTLSCAFile    string
	RedisNamespace    string
	RedisWaitReplicas int

	Projection      string
	HTTPAddr        string
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
	// LogFormat is "text" or "json".
	LogFormat string
	// TraceEventSpans is "sampled", "always" or "off" (see
	// kafkarunner.EventSpans).
	TraceEventSpans string
	// Console serves the web console; ConsoleAdminToken (a secret) lets
	// operators retry and skip parked streams in it.
	Console           bool
	ConsoleAdminToken string
}

// ConsumerGroup returns Group, or the projection's name when it is empty.
func (c Config) ConsumerGroup() string {
	if c.Group != "" {
		return c.Group
	}
	return c.Projection
}

// Config returns the Set's settings of the table, typed and checked, with
// every problem joined in one error (each an *Error naming its flag or
// variable). Settings that must be present (brokers, a Redis URL) are not
// checked here: whether they are needed is the program's business.
func (s *Set) Config() (Config, error) {
	var c Config
	var errs []error
	str := func(v Var, dst *string) {
		if s.Has(v) {
			*dst = s.String(v)
		}
	}
	str(Topic, &c.Topic)
	str(Group, &c.Group)
	str(KafkaUsername, &c.KafkaUsername)
	str(KafkaPassword, &c.KafkaPassword)
	str(KafkaOAuthTokenFile, &c.KafkaOAuthTokenFile)
	str(KafkaTLSCAFile, &c.KafkaTLSCAFile)
	str(RedisURL, &c.RedisURL)
	str(RedisUsername, &c.RedisUsername)
	str(RedisPassword, &c.RedisPassword)
	str(RedisTLSCAFile, &c.RedisTLSCAFile)
	str(RedisTLSCertFile, &c.RedisTLSCertFile)
	str(RedisTLSKeyFile, &c.RedisTLSKeyFile)
	str(RedisSentinelMaster, &c.RedisSentinelMaster)
	str(RedisSentinelUsername, &c.RedisSentinelUsername)
	str(RedisSentinelPassword, &c.RedisSentinelPassword)
	str(KafkaTLSCertFile, &c.KafkaTLSCertFile)
	str(KafkaTLSKeyFile, &c.KafkaTLSKeyFile)
	str(RedisNamespace, &c.RedisNamespace)
	str(Projection, &c.Projection)
	str(HTTPAddr, &c.HTTPAddr)
	str(ConsoleAdminToken, &c.ConsoleAdminToken)
	if s.Has(KafkaBrokers) {
		c.Brokers = s.List(KafkaBrokers)
	}
	if s.Has(RedisAddrs) {
		c.RedisAddrs = s.List(RedisAddrs)
	}
	boolean := func(v Var, dst *bool) {
		if !s.Has(v) {
			return
		}
		b, err := s.Bool(v)
		if err != nil {
			errs = append(errs, err)
		}
		*dst = b
	}
	boolean(RedisCluster, &c.RedisCluster)
	boolean(RedisTLS, &c.RedisTLS)
	boolean(Console, &c.Console)
	c.RedisTLS = c.RedisTLS || c.RedisTLSCertFile != ""
	switch {
	case c.RedisURL != "" && len(c.RedisAddrs) > 0:
		errs = append(errs, errors.New("give Redis as -redis-url or as -redis-addrs, not both"))
	case c.RedisCluster && c.RedisSentinelMaster != "":
		errs = append(errs, errors.New("-redis-cluster and -redis-sentinel-master exclude each other"))
	case (c.RedisCluster || c.RedisSentinelMaster != "") && len(c.RedisAddrs) == 0:
		errs = append(errs, errors.New("-redis-cluster and -redis-sentinel-master need -redis-addrs (PROJECTOR_REDIS_ADDRS)"))
	}
	if (c.RedisSentinelUsername != "" || c.RedisSentinelPassword != "") && c.RedisSentinelMaster == "" {
		errs = append(errs, errors.New("-redis-sentinel-username and -redis-sentinel-password need -redis-sentinel-master"))
	}
	if (c.RedisTLSCertFile == "") != (c.RedisTLSKeyFile == "") {
		errs = append(errs, errors.New("-redis-tls-cert and -redis-tls-key go together"))
	}
	if (c.KafkaTLSCertFile == "") != (c.KafkaTLSKeyFile == "") {
		errs = append(errs, errors.New("-kafka-tls-cert and -kafka-tls-key go together"))
	}
	if s.Has(KafkaSASLMechanism) {
		c.KafkaSASLMechanism = strings.ToUpper(s.String(KafkaSASLMechanism))
		switch c.KafkaSASLMechanism {
		case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER":
		default:
			errs = append(errs, s.Invalid(KafkaSASLMechanism, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"))
		}
		switch {
		case c.KafkaSASLMechanism == "OAUTHBEARER":
			if c.KafkaOAuthTokenFile == "" {
				errs = append(errs, errors.New("-kafka-sasl-mechanism OAUTHBEARER needs -kafka-oauth-token-file (PROJECTOR_KAFKA_OAUTH_TOKEN_FILE)"))
			}
			if c.KafkaUsername != "" || c.KafkaPassword != "" {
				errs = append(errs, errors.New("-kafka-sasl-mechanism OAUTHBEARER takes its token from -kafka-oauth-token-file: "+
					"drop -kafka-username and PROJECTOR_KAFKA_PASSWORD"))
			}
		case c.KafkaSASLMechanism != "" && (c.KafkaUsername == "" || c.KafkaPassword == ""):
			errs = append(errs, errors.New("-kafka-sasl-mechanism "+c.KafkaSASLMechanism+" needs -kafka-username and PROJECTOR_KAFKA_PASSWORD"))
		}
	}
	if c.KafkaOAuthTokenFile != "" && c.KafkaSASLMechanism != "OAUTHBEARER" {
		errs = append(errs, errors.New("-kafka-oauth-token-file (PROJECTOR_KAFKA_OAUTH_TOKEN_FILE) is only for -kafka-sasl-mechanism OAUTHBEARER"))
	}
	if s.Has(KafkaTLS) {
		var err error
		if c.KafkaTLS, err = s.Bool(KafkaTLS); err != nil {
			errs = append(errs, err)
		}
	}
	c.KafkaTLS = c.KafkaTLS || c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != ""
	positive := func(v Var, dst *time.Duration) {
		if !s.Has(v) {
			return
		}
		d, err := s.Duration(v)
		if err == nil && d <= 0 {
			err = s.Invalid(v, "a positive duration such as 30s")
		}
		if err != nil {
			errs = append(errs, err)
		}
		*dst = d
	}
	positive(KafkaSessionTimeout, &c.KafkaSessionTimeout)
	if s.Has(KafkaInstanceID) {
		c.KafkaInstanceID = s.String(KafkaInstanceID)
		if len(c.KafkaInstanceID) > 249 {
			errs = append(errs, s.Invalid(KafkaInstanceID, "at most 249 bytes"))
		}
	}
	if s.Has(KafkaGroupProtocol) {
		switch c.KafkaGroupProtocol = strings.ToLower(s.String(KafkaGroupProtocol)); c.KafkaGroupProtocol {
		case "", "classic", "consumer":
			if c.KafkaGroupProtocol == "" {
				c.KafkaGroupProtocol = "classic"
			}
		default:
			errs = append(errs, s.Invalid(KafkaGroupProtocol, "classic or consumer"))
		}
	}
	positive(ShutdownTimeout, &c.ShutdownTimeout)
	if s.Has(RedisWaitReplicas) {
		n, err := s.Int(RedisWaitReplicas)
		if err != nil || n < 0 {
			errs = append(errs, s.Invalid(RedisWaitReplicas, "0 or a positive number"))
		}
		c.RedisWaitReplicas = n
	}
	if s.Has(LogFormat) {
		switch c.LogFormat = strings.ToLower(s.String(LogFormat)); c.LogFormat {
		case "", "text", "json":
			if c.LogFormat == "" {
				c.LogFormat = "text"
			}
		default:
			errs = append(errs, s.Invalid(LogFormat, "text or json"))
		}
	}
	if s.Has(TraceEventSpans) {
		switch c.TraceEventSpans = strings.ToLower(s.String(TraceEventSpans)); c.TraceEventSpans {
		case "", "sampled", "always", "off":
			if c.TraceEventSpans == "" {
				c.TraceEventSpans = "sampled"
			}
		default:
			errs = append(errs, s.Invalid(TraceEventSpans, "sampled, always or off"))
		}
	}
	if s.Has(LogLevel) {
		c.LogLevel = slog.LevelInfo
		if lv := s.String(LogLevel); lv != "" {
			if err := c.LogLevel.UnmarshalText([]byte(lv)); err != nil {
				errs = append(errs, s.Invalid(LogLevel, "debug, info, warn or error"))
			}
		}
	}
	return c, errors.Join(errs...)
}

// HasRedis reports whether Redis is given, as a URL or as addresses.
func (c Config) HasRedis() bool { return c.RedisURL != "" || len(c.RedisAddrs) > 0 }
