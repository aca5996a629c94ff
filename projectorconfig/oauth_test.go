package projectorconfig

import (
	"strings"
	"testing"
)

func TestKafkaOAuthBearer(t *testing.T) {
	c, err := newSet(env{"PROJECTOR_KAFKA_SASL_MECHANISM": "oauthbearer", "PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": "/var/run/secrets/kafka/token"}).Config()
	if err != nil || c.KafkaSASLMechanism != "OAUTHBEARER" || c.KafkaOAuthTokenFile != "/var/run/secrets/kafka/token" {
		t.Fatalf("Config = %+v, %v", c, err)
	}
	s := newSet(env{"PROJECTOR_KAFKA_SASL_MECHANISM": "OAUTHBEARER"})
	parse(t, s, "-kafka-oauth-token-file", "/t")
	if c, err := s.Config(); err != nil || c.KafkaOAuthTokenFile != "/t" {
		t.Errorf("the flag: %+v, %v", c, err)
	}
	for _, tt := range []struct {
		env  env
		want string
	}{
		{env{"PROJECTOR_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}, "needs -kafka-oauth-token-file (PROJECTOR_KAFKA_OAUTH_TOKEN_FILE)"},
		{env{"PROJECTOR_KAFKA_SASL_MECHANISM": "OAUTHBEARER", "PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": "/t", "PROJECTOR_KAFKA_USERNAME": "u"},
			"drop -kafka-username and PROJECTOR_KAFKA_PASSWORD"},
		{env{"PROJECTOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "PROJECTOR_KAFKA_USERNAME": "u", "PROJECTOR_KAFKA_PASSWORD": "p",
			"PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": "/t"}, "is only for -kafka-sasl-mechanism OAUTHBEARER"},
		{env{"PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": "/t"}, "is only for -kafka-sasl-mechanism OAUTHBEARER"},
		{env{"PROJECTOR_KAFKA_SASL_MECHANISM": "GSSAPI"}, "OAUTHBEARER"},
	} {
		if _, err := newSet(tt.env).Config(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Config(%v) = %v, want %q", tt.env, err, tt.want)
		}
	}
}
