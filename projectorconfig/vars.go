package projectorconfig

// Kind is how a Var's value is parsed.
type Kind uint8

const (
	// String is any text.
	String Kind = iota
	// Bool is parsed by ParseBool.
	Bool
	// Int is a decimal integer.
	Int
	// Duration is parsed by time.ParseDuration ("45s", "2m").
	Duration
	// List is comma-separated; blanks around items and empty items are
	// dropped.
	List
	// URL is a URL that may carry a password (redis://user:pass@host):
	// shown only when it carries none.
	URL
)

// Var is one setting: its environment variable, flag, default and help.
type Var struct {
	// Env is the environment variable, PROJECTOR_...; it identifies the
	// Var in a Set.
	Env string
	// Flag is the flag name without dashes.
	Flag string
	// Aliases are older flag names still accepted, e.g. "redis" for
	// "redis-url".
	Aliases []string
	// Default is the value when neither the flag nor the variable is set.
	Default string
	Kind    Kind
	// Secret values are never shown: not in -h, not in errors. Their
	// flags are bound only by BindAll.
	Secret bool
	// Help describes the setting; the variable's name is appended.
	Help string
}

// The table. Programs take the subsets they use (Connection, Worker) and
// may change a default with Set.SetDefault; Flag and Env never differ
// between programs.
var (
	KafkaBrokers = Var{Env: "PROJECTOR_KAFKA_BROKERS", Flag: "brokers", Kind: List,
		Help: "Kafka seed brokers, comma-separated"}
	Topic = Var{Env: "PROJECTOR_TOPIC", Flag: "topic",
		Help: "event topic"}
	Group = Var{Env: "PROJECTOR_GROUP", Flag: "group",
		Help: "consumer group; default: the projection's name"}
	KafkaSASLMechanism = Var{Env: "PROJECTOR_KAFKA_SASL_MECHANISM", Flag: "kafka-sasl-mechanism",
		Help: "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs -kafka-username and PROJECTOR_KAFKA_PASSWORD), or OAUTHBEARER (needs -kafka-oauth-token-file)"}
	KafkaUsername = Var{Env: "PROJECTOR_KAFKA_USERNAME", Flag: "kafka-username",
		Help: "Kafka SASL user"}
	KafkaPassword = Var{Env: "PROJECTOR_KAFKA_PASSWORD", Flag: "kafka-password", Secret: true,
		Help: "Kafka SASL password; prefer the variable, a flag shows in the process list"}
	KafkaOAuthTokenFile = Var{Env: "PROJECTOR_KAFKA_OAUTH_TOKEN_FILE", Flag: "kafka-oauth-token-file",
		Help: "file holding the bearer token for -kafka-sasl-mechanism OAUTHBEARER, read again at every (re-)authentication so that a rotated token is picked up"}
	KafkaTLS = Var{Env: "PROJECTOR_KAFKA_TLS", Flag: "kafka-tls", Kind: Bool, Default: "false",
		Help: "connect to Kafka with TLS (true/false, yes/no, on/off, 1/0)"}
	KafkaTLSCAFile = Var{Env: "PROJECTOR_KAFKA_TLS_CA_FILE", Flag: "kafka-tls-ca",
		Help: "PEM file of the CA of Kafka's certificates; implies -kafka-tls"}
	KafkaTLSCertFile = Var{Env: "PROJECTOR_KAFKA_TLS_CERT_FILE", Flag: "kafka-tls-cert",
		Help: "PEM file of a client certificate, for brokers that require one (mutual TLS, e.g. a Strimzi TLS user); implies -kafka-tls"}
	KafkaTLSKeyFile = Var{Env: "PROJECTOR_KAFKA_TLS_KEY_FILE", Flag: "kafka-tls-key",
		Help: "PEM file of the client certificate's key"}
	KafkaSessionTimeout = Var{Env: "PROJECTOR_KAFKA_SESSION_TIMEOUT", Flag: "kafka-session-timeout", Kind: Duration, Default: "6s",
		Help: "how long the group waits for a replica that stopped answering before its partitions move (classic protocol; within the broker's group.min/max.session.timeout.ms)"}
	KafkaInstanceID = Var{Env: "PROJECTOR_KAFKA_INSTANCE_ID", Flag: "kafka-instance-id",
		Help: "group.instance.id (static membership): a replica restarted after a crash with the same ID regains its partitions without a rebalance; unique per replica (the pod name); empty: off"}
	KafkaGroupProtocol = Var{Env: "PROJECTOR_KAFKA_GROUP_PROTOCOL", Flag: "kafka-group-protocol", Default: "classic",
		Help: "consumer group protocol: classic (cooperative-sticky, the session timeout above) or consumer (KIP-848, Kafka 4.0+, recommended from 4.3; the broker sets the session timeout)"}

	RedisURL = Var{Env: "PROJECTOR_REDIS_URL", Flag: "redis-url", Aliases: []string{"redis"}, Kind: URL,
		Help: "Redis URL, redis:// or rediss:// (TLS); put the password in PROJECTOR_REDIS_PASSWORD, not here"}
	RedisAddrs = Var{Env: "PROJECTOR_REDIS_ADDRS", Flag: "redis-addrs", Kind: List,
		Help: "Redis host:port addresses instead of a URL: the seeds of a Redis Cluster (with -redis-cluster), or the Sentinels (with -redis-sentinel-master)"}
	RedisSentinelMaster = Var{Env: "PROJECTOR_REDIS_SENTINEL_MASTER", Flag: "redis-sentinel-master",
		Help: "the master name the Sentinels of -redis-addrs monitor: connect through Sentinel and follow failovers"}
	RedisSentinelUsername = Var{Env: "PROJECTOR_REDIS_SENTINEL_USERNAME", Flag: "redis-sentinel-username",
		Help: "ACL user for the Sentinels themselves, when they require one (-redis-username is for the master)"}
	RedisSentinelPassword = Var{Env: "PROJECTOR_REDIS_SENTINEL_PASSWORD", Flag: "redis-sentinel-password", Secret: true,
		Help: "password for the Sentinels themselves (their requirepass or the -redis-sentinel-username user's); prefer the variable"}
	RedisCluster = Var{Env: "PROJECTOR_REDIS_CLUSTER", Flag: "redis-cluster", Kind: Bool, Default: "false",
		Help: "-redis-addrs are the seeds of a Redis Cluster"}
	RedisTLS = Var{Env: "PROJECTOR_REDIS_TLS", Flag: "redis-tls", Kind: Bool, Default: "false",
		Help: "TLS to Redis with -redis-addrs (a rediss:// URL implies it)"}
	RedisTLSCertFile = Var{Env: "PROJECTOR_REDIS_TLS_CERT_FILE", Flag: "redis-tls-cert",
		Help: "PEM file of a client certificate, for a Redis with tls-auth-clients"}
	RedisTLSKeyFile = Var{Env: "PROJECTOR_REDIS_TLS_KEY_FILE", Flag: "redis-tls-key",
		Help: "PEM file of the client certificate's key"}
	RedisUsername = Var{Env: "PROJECTOR_REDIS_USERNAME", Flag: "redis-username",
		Help: "Redis ACL user"}
	RedisPassword = Var{Env: "PROJECTOR_REDIS_PASSWORD", Flag: "redis-password", Secret: true,
		Help: "Redis password; prefer the variable, a flag shows in the process list"}
	RedisTLSCAFile = Var{Env: "PROJECTOR_REDIS_TLS_CA_FILE", Flag: "redis-tls-ca",
		Help: "PEM file of the CA of Redis's certificate, for a rediss:// URL"}
	RedisNamespace = Var{Env: "PROJECTOR_REDIS_NAMESPACE", Flag: "redis-namespace", Aliases: []string{"namespace"}, Default: "projector",
		Help: "prefix of every Redis key"}
	RedisWaitReplicas = Var{Env: "PROJECTOR_REDIS_WAIT_REPLICAS", Flag: "redis-wait-replicas", Kind: Int, Default: "0",
		Help: "writes replicas rely on (checkpoints before offset commits, a replay's epoch) wait until this many Redis replicas have them; 0: off"}

	Projection = Var{Env: "PROJECTOR_PROJECTION", Flag: "projection",
		Help: "projection name: consumer group and Redis keys; renaming starts from scratch"}
	HTTPAddr = Var{Env: "PROJECTOR_HTTP_ADDR", Flag: "http", Default: ":8080",
		Help: "HTTP listen address: /healthz, /readyz, /metrics and the program's own handlers"}
	ShutdownTimeout = Var{Env: "PROJECTOR_SHUTDOWN_TIMEOUT", Flag: "shutdown-timeout", Kind: Duration, Default: "30s",
		Help: "time to finish the batch, store cursors, commit and leave the group after SIGTERM"}
	LogLevel = Var{Env: "PROJECTOR_LOG_LEVEL", Flag: "log-level", Default: "info",
		Help: "debug, info, warn or error"}
	LogFormat = Var{Env: "PROJECTOR_LOG_FORMAT", Flag: "log-format", Default: "text",
		Help: "text or json (one JSON object per line, with trace_id and span_id inside a span)"}
	Console = Var{Env: "PROJECTOR_CONSOLE", Flag: "console", Kind: Bool, Default: "false",
		Help: "serve the web console (projections, lag, parked streams) under /console/ on the HTTP address; read-only unless an admin token is set"}
	ConsoleAdminToken = Var{Env: "PROJECTOR_CONSOLE_ADMIN_TOKEN", Flag: "console-admin-token", Secret: true,
		Help: "token that signs an operator in to the console to retry or skip parked streams; empty: the console is read-only; prefer the variable"}
	TraceEventSpans = Var{Env: "PROJECTOR_TRACE_EVENT_SPANS", Flag: "trace-event-spans", Default: "sampled",
		Help: "which events get an apply span of their own: sampled (their record's trace is sampled), always or off; batches always get one"}
)

// Connection returns the settings of every program that reaches a
// projection's Kafka and Redis: workers and projectorctl.
func Connection() []Var {
	return []Var{KafkaBrokers, Topic, Group, KafkaSASLMechanism, KafkaUsername, KafkaPassword, KafkaOAuthTokenFile, KafkaTLS, KafkaTLSCAFile,
		KafkaTLSCertFile, KafkaTLSKeyFile,
		RedisURL, RedisAddrs, RedisSentinelMaster, RedisSentinelUsername, RedisSentinelPassword, RedisCluster, RedisUsername, RedisPassword, RedisTLS, RedisTLSCAFile,
		RedisTLSCertFile, RedisTLSKeyFile, RedisNamespace, RedisWaitReplicas}
}

// Worker returns the settings of a projection worker: Connection plus the
// projection, the HTTP address, the shutdown timeout, the group's session
// timeout, instance ID and protocol, the log level and format, and the web
// console.
func Worker() []Var {
	return append(Connection(), Projection, KafkaSessionTimeout, KafkaInstanceID, KafkaGroupProtocol, HTTPAddr, ShutdownTimeout, LogLevel, LogFormat, TraceEventSpans, Console, ConsoleAdminToken)
}
