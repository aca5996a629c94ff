package worker

import (
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
)

// KafkaSecurity is the Kafka security (SASL, TLS, mutual TLS) the settings
// describe. projectorctl builds its clients the same way.
func KafkaSecurity(c projectorconfig.Config) kafkastore.Security {
	return kafkastore.Security{SASLMechanism: c.KafkaSASLMechanism, Username: c.KafkaUsername, Password: c.KafkaPassword,
		OAuthTokenFile: c.KafkaOAuthTokenFile, TLS: c.KafkaTLS, CAFile: c.KafkaTLSCAFile, CertFile: c.KafkaTLSCertFile, KeyFile: c.KafkaTLSKeyFile}
}

// RedisClientConfig is the Redis the settings describe: a URL, or
// addresses of a standalone server, of a Cluster's seeds or of Sentinels
// with the master name, each with TLS (and a client certificate) and an
// ACL user. Sentinels get their own user and password (go-redis sends
// the master's only to the master); the TLS settings apply to both.
// projectorctl connects the same way.
func RedisClientConfig(c projectorconfig.Config) redischeckpoint.ClientConfig {
	return redischeckpoint.ClientConfig{URL: c.RedisURL, Addrs: c.RedisAddrs, MasterName: c.RedisSentinelMaster, Cluster: c.RedisCluster,
		SentinelUsername: c.RedisSentinelUsername, SentinelPassword: c.RedisSentinelPassword,
		Username: c.RedisUsername, Password: c.RedisPassword, TLS: c.RedisTLS, CAFile: c.RedisTLSCAFile,
		CertFile: c.RedisTLSCertFile, KeyFile: c.RedisTLSKeyFile}
}
