package charttest

import (
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// triggerRefs returns the TriggerAuthentication's parameters as
// parameter -> secret/key.
func triggerRefs(t *testing.T, r rendered) map[string]string {
	t.Helper()
	ta := decodeAs[*triggerAuthentication](t, r.one(t, "TriggerAuthentication"))
	got := map[string]string{}
	for _, ref := range ta.Spec.SecretTargetRef {
		got[ref.Parameter] = ref.Name + "/" + ref.Key
	}
	return got
}

// TestOAuthBearerRendering: OAUTHBEARER sets the mechanism and the token
// file, and no username or password; the token is mounted through
// extraVolumes/extraVolumeMounts (here a projected service-account token).
func TestOAuthBearerRendering(t *testing.T) {
	r := mustRender(t, values(t, `
kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: /var/run/secrets/kafka/token}}, tls: {enabled: true}}
extraVolumes:
  - name: kafka-token
    projected:
      sources:
        - serviceAccountToken: {audience: kafka, expirationSeconds: 3600, path: token}
extraVolumeMounts:
  - {name: kafka-token, mountPath: /var/run/secrets/kafka, readOnly: true}`))
	d := decodeAs[*appsv1.Deployment](t, r.one(t, "Deployment"))
	w := container(t, &d.Spec.Template.Spec, "worker")
	env := envMap(w)
	for name, want := range map[string]string{
		"PROJECTOR_KAFKA_SASL_MECHANISM":   "OAUTHBEARER",
		"PROJECTOR_KAFKA_OAUTH_TOKEN_FILE": "/var/run/secrets/kafka/token",
		"PROJECTOR_KAFKA_TLS":              "true",
	} {
		if env[name].Value != want {
			t.Errorf("%s = %+v, want %q", name, env[name], want)
		}
	}
	for _, name := range []string{"PROJECTOR_KAFKA_USERNAME", "PROJECTOR_KAFKA_PASSWORD"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set with OAUTHBEARER", name)
		}
	}
	mounted := false
	for _, m := range w.VolumeMounts {
		mounted = mounted || m.Name == "kafka-token" && m.MountPath == "/var/run/secrets/kafka"
	}
	projected := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		projected = projected || v.Name == "kafka-token" && v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken != nil
	}
	if !mounted || !projected {
		t.Errorf("the token volume is not rendered: mounted %v, projected %v", mounted, projected)
	}
	if n := len(r.byKind("Secret")); n != 0 {
		t.Errorf("rendered %d Secrets: OAUTHBEARER needs no credentials Secret", n)
	}
}

// TestMutualTLSRendering: the client certificate and key of kafka.tls reach
// the worker as files of the mounted TLS Secret, and KEDA's
// TriggerAuthentication as cert and key.
func TestMutualTLSRendering(t *testing.T) {
	r := mustRender(t, values(t, `
kafka: {tls: {enabled: true, caKey: ca.crt, certKey: user.crt, keyKey: user.key}}
tls: {secretName: kafka-user, mountPath: /etc/projector/tls}
autoscaling: {keda: {enabled: true}}`))
	env := envMap(container(t, &decodeAs[*appsv1.Deployment](t, r.one(t, "Deployment")).Spec.Template.Spec, "worker"))
	for name, want := range map[string]string{
		"PROJECTOR_KAFKA_TLS":           "true",
		"PROJECTOR_KAFKA_TLS_CA_FILE":   "/etc/projector/tls/ca.crt",
		"PROJECTOR_KAFKA_TLS_CERT_FILE": "/etc/projector/tls/user.crt",
		"PROJECTOR_KAFKA_TLS_KEY_FILE":  "/etc/projector/tls/user.key",
	} {
		if env[name].Value != want {
			t.Errorf("%s = %+v, want %q", name, env[name], want)
		}
	}
	want := map[string]string{"ca": "kafka-user/ca.crt", "cert": "kafka-user/user.crt", "key": "kafka-user/user.key"}
	if got := triggerRefs(t, r); !maps.Equal(got, want) {
		t.Errorf("TriggerAuthentication = %v, want %v", got, want)
	}
	m := decodeAs[*scaledObject](t, r.one(t, "ScaledObject")).Spec.Triggers[0].Metadata
	if m["tls"] != "enable" || m["sasl"] != "" {
		t.Errorf("trigger metadata = %v, want tls enable and no sasl", m)
	}
	if n := len(r.byKind("Secret")); n != 0 {
		t.Errorf("rendered %d Secrets: mutual TLS needs no credentials Secret", n)
	}
}

// TestKEDAMetadata: KEDA's sasl and tls are trigger metadata for every
// mechanism; the TriggerAuthentication carries real credentials only, and
// is left out when there are none.
func TestKEDAMetadata(t *testing.T) {
	for _, c := range []struct {
		name, vals string
		sasl, tls  string
		refs       map[string]string // nil: no TriggerAuthentication
	}{
		{"plaintext", "", "", "", nil},
		{"TLS with the system roots", "kafka: {tls: {enabled: true}}", "", "enable", nil},
		{"PLAIN", "kafka: {sasl: {mechanism: PLAIN}}\ncredentials: {kafkaUsername: u, kafkaPassword: p}", "plaintext", "",
			map[string]string{"username": "billing-projector-credentials/kafka-username", "password": "billing-projector-credentials/kafka-password"}},
		{"SCRAM-SHA-512 over TLS", "kafka: {sasl: {mechanism: SCRAM-SHA-512}, tls: {enabled: true}}\ncredentials: {existingSecret: creds}", "scram_sha512", "enable",
			map[string]string{"username": "creds/kafka-username", "password": "creds/kafka-password"}},
		{"OAUTHBEARER with the user's TriggerAuthentication",
			"kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: /t/token}}, tls: {enabled: true, caKey: ca.crt}}\ntls: {secretName: ca}\nautoscaling: {keda: {authenticationRef: kafka-oauth-client}}",
			"oauthbearer", "enable", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustRender(t, values(t, c.vals, "autoscaling: {keda: {enabled: true}}"))
			tr := decodeAs[*scaledObject](t, r.one(t, "ScaledObject")).Spec.Triggers[0]
			if tr.Metadata["sasl"] != c.sasl || tr.Metadata["tls"] != c.tls {
				t.Errorf("metadata sasl %q tls %q, want %q %q", tr.Metadata["sasl"], tr.Metadata["tls"], c.sasl, c.tls)
			}
			tas := r.byKind("TriggerAuthentication")
			switch {
			case c.refs == nil && len(tas) != 0:
				t.Errorf("a TriggerAuthentication is rendered:\n%s", tas[0].YAML)
			case c.refs != nil:
				if got := triggerRefs(t, r); !maps.Equal(got, c.refs) {
					t.Errorf("TriggerAuthentication = %v, want %v", got, c.refs)
				}
			}
			wantRef := ""
			if c.refs != nil {
				wantRef = "billing-projector"
			}
			if strings.Contains(c.vals, "authenticationRef") {
				wantRef = "kafka-oauth-client"
			}
			gotRef := ""
			if tr.AuthenticationRef != nil {
				gotRef = tr.AuthenticationRef.Name
			}
			if gotRef != wantRef {
				t.Errorf("authenticationRef %q, want %q", gotRef, wantRef)
			}
			for _, s := range r.byKind("Secret") {
				if strings.Contains(s.YAML, "keda-") {
					t.Errorf("the created Secret still carries KEDA keys:\n%s", s.YAML)
				}
			}
		})
	}
}

// TestKafkaAuthRefusals: what the schema and the templates refuse about
// OAUTHBEARER and KEDA, without showing a credential.
func TestKafkaAuthRefusals(t *testing.T) {
	for name, c := range map[string]struct{ vals, want string }{
		"OAUTHBEARER without a token path": {"kafka: {sasl: {mechanism: OAUTHBEARER}}", "schema"},
		"a token path without OAUTHBEARER": {"kafka: {sasl: {mechanism: SCRAM-SHA-256, oauthbearer: {tokenPath: /t}}}\ncredentials: {kafkaUsername: u, kafkaPassword: p}", "schema"},
		"a relative token path":            {"kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: token}}}", "schema"},
		"OAUTHBEARER with a password":      {"kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: /t}}}\ncredentials: {kafkaPassword: pl4nted}", "schema"},
		"OAUTHBEARER with a username":      {"kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: /t}}}\ncredentials: {kafkaUsername: pl4nted}", "schema"},
		"the removed KEDA Secret keys":     {"credentials: {keys: {kedaSasl: keda-sasl}}", "schema"},
		"KEDA with OAUTHBEARER and no TriggerAuthentication of the user's": {
			"kafka: {sasl: {mechanism: OAUTHBEARER, oauthbearer: {tokenPath: /t}}}\nautoscaling: {keda: {enabled: true}}", "autoscaling.keda.authenticationRef"},
		"sasl in KEDA's extra metadata": {"autoscaling: {keda: {enabled: true, extraMetadata: {sasl: plaintext}}}", "autoscaling.keda.extraMetadata.sasl"},
	} {
		t.Run(name, func(t *testing.T) {
			err := renderError(t, values(t, c.vals))
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "pl4nted") {
				t.Errorf("the error shows a credential: %v", err)
			}
		})
	}
}
