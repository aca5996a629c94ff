package charttest

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// decodeAs decodes a manifest strictly into T, failing the test otherwise.
func decodeAs[T any](t *testing.T, m manifest) T {
	t.Helper()
	obj, err := decode(m)
	if err != nil {
		t.Fatalf("%s: %v", m, err)
	}
	v, ok := obj.(T)
	if !ok {
		t.Fatalf("%s decoded as %T", m, obj)
	}
	return v
}

func deployment(t *testing.T, vals map[string]any) *appsv1.Deployment {
	t.Helper()
	return decodeAs[*appsv1.Deployment](t, mustRender(t, vals).one(t, "Deployment"))
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func envMap(c *corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func TestDefaultsDeployBillingWorker(t *testing.T) {
	d := deployment(t, values(t, ""))
	c := container(t, &d.Spec.Template.Spec, "worker")
	if c.Image != testImage+":0.1.0" {
		t.Errorf("image = %q, want the given repository at the chart's appVersion", c.Image)
	}
	if len(c.Command) != 0 || strings.Join(c.Args, " ") != "worker" {
		t.Errorf("command %q args %q, want the entrypoint with [worker]", c.Command, c.Args)
	}
	env := envMap(c)
	want := map[string]string{
		"PROJECTOR_PROJECTION":       "billing",
		"PROJECTOR_TOPIC":            "mabis.process-events",
		"PROJECTOR_KAFKA_BROKERS":    "kafka:9092",
		"PROJECTOR_REDIS_URL":        "redis://redis:6379/0",
		"PROJECTOR_HTTP_ADDR":        ":8080",
		"PROJECTOR_SHUTDOWN_TIMEOUT": "45s",
		"PROJECTOR_KAFKA_TLS":        "false",
	}
	for k, v := range want {
		if env[k].Value != v {
			t.Errorf("%s = %q, want %q", k, env[k].Value, v)
		}
	}
	// The group defaults to the projection name inside the worker; OTEL_* only when given.
	for _, k := range []string{"PROJECTOR_GROUP", "PROJECTOR_KAFKA_USERNAME", "PROJECTOR_KAFKA_PASSWORD", "PROJECTOR_REDIS_PASSWORD",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s is set by default", k)
		}
	}
	if c.Resources.Limits != nil || c.Resources.Requests != nil {
		t.Errorf("resources = %v, want empty by default", c.Resources)
	}
	if p := c.Ports; len(p) != 1 || p[0].Name != "http" || p[0].ContainerPort != 8080 {
		t.Errorf("ports = %v, want http 8080", p)
	}
}

func TestProbes(t *testing.T) {
	c := container(t, &deployment(t, values(t, "")).Spec.Template.Spec, "worker")
	for name, tc := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		// Liveness and startup must not depend on Kafka or Redis: /healthz is the process only.
		"liveness":  {c.LivenessProbe, "/healthz"},
		"startup":   {c.StartupProbe, "/healthz"},
		"readiness": {c.ReadinessProbe, "/readyz"},
	} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s probe missing or not httpGet", name)
			continue
		}
		if tc.probe.HTTPGet.Path != tc.path || tc.probe.HTTPGet.Port.StrVal != "http" {
			t.Errorf("%s probe = %s on %s, want %s on http", name, tc.probe.HTTPGet.Path, tc.probe.HTTPGet.Port.String(), tc.path)
		}
	}
}

func TestSecurityDefaults(t *testing.T) {
	d := deployment(t, values(t, ""))
	pod := d.Spec.Template.Spec
	c := container(t, &pod, "worker")
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot is not true")
	case sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Error("runAsUser is not 65532")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities = %v, want drop [ALL]", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("seccompProfile is not RuntimeDefault")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot and RuntimeDefault seccomp", psc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false on the pod")
	}
	sa := decodeAs[*corev1.ServiceAccount](t, mustRender(t, values(t, "")).one(t, "ServiceAccount"))
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false on the ServiceAccount")
	}
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pod uses ServiceAccount %q, chart creates %q", pod.ServiceAccountName, sa.Name)
	}
}

// TestShutdownFitsGracePeriod: the worker's own deadline is below the kubelet's, for the defaults
// and for other grace periods; a margin that leaves no time is refused.
func TestShutdownFitsGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		vals  string
		grace int64
		want  string
	}{
		{"", 60, "45s"},
		{"shutdown: {gracePeriodSeconds: 120}", 120, "105s"},
		{"shutdown: {gracePeriodSeconds: 30, marginSeconds: 5}", 30, "25s"},
	} {
		d := deployment(t, values(t, tc.vals))
		grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace == nil || *grace != tc.grace {
			t.Errorf("%q: terminationGracePeriodSeconds = %v, want %d", tc.vals, grace, tc.grace)
			continue
		}
		got := envMap(container(t, &d.Spec.Template.Spec, "worker"))["PROJECTOR_SHUTDOWN_TIMEOUT"].Value
		timeout, err := time.ParseDuration(got)
		if err != nil {
			t.Errorf("%q: PROJECTOR_SHUTDOWN_TIMEOUT %q: %v", tc.vals, got, err)
			continue
		}
		if got != tc.want || timeout >= time.Duration(*grace)*time.Second {
			t.Errorf("%q: PROJECTOR_SHUTDOWN_TIMEOUT = %s with a grace period of %ds, want %s", tc.vals, got, *grace, tc.want)
		}
	}
	err := renderError(t, values(t, "shutdown: {gracePeriodSeconds: 10, marginSeconds: 10}"))
	if !strings.Contains(err.Error(), "must be larger than shutdown.marginSeconds") {
		t.Errorf("error = %v", err)
	}
}

func TestReplicasOmittedWithAutoscaling(t *testing.T) {
	if d := deployment(t, values(t, "replicaCount: 3")); d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
	}
	for _, v := range []string{"autoscaling: {hpa: {enabled: true}}", "autoscaling: {keda: {enabled: true}}"} {
		if d := deployment(t, values(t, "replicaCount: 3", v)); d.Spec.Replicas != nil {
			t.Errorf("%s: replicas = %d, want it left out for the autoscaler", v, *d.Spec.Replicas)
		}
	}
}

func TestBothAutoscalersFail(t *testing.T) {
	err := renderError(t, values(t, "autoscaling: {hpa: {enabled: true}, keda: {enabled: true}}"))
	if !strings.Contains(err.Error(), "autoscaling.hpa.enabled and autoscaling.keda.enabled are both true") {
		t.Errorf("error = %v, want the message naming both settings", err)
	}
}

func TestAutoscalersCappedAtPartitions(t *testing.T) {
	r := mustRender(t, values(t, "kafka: {partitions: 4}", "autoscaling: {keda: {enabled: true, maxReplicaCount: 50}}"))
	so := decodeAs[*scaledObject](t, r.one(t, "ScaledObject"))
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount != 4 {
		t.Errorf("KEDA maxReplicaCount = %v, want capped at 4 partitions", so.Spec.MaxReplicaCount)
	}
	if len(r.byKind("HorizontalPodAutoscaler")) != 0 {
		t.Error("an HPA rendered beside KEDA")
	}
	hpa := decodeAs[*autoscalingv2.HorizontalPodAutoscaler](t,
		mustRender(t, values(t, "kafka: {partitions: 4}", "autoscaling: {hpa: {enabled: true, maxReplicas: 50}}")).one(t, "HorizontalPodAutoscaler"))
	if hpa.Spec.MaxReplicas != 4 {
		t.Errorf("HPA maxReplicas = %d, want capped at 4 partitions", hpa.Spec.MaxReplicas)
	}
	if hpa.Spec.ScaleTargetRef.Name != "billing-projector" || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
		t.Errorf("HPA targets %+v", hpa.Spec.ScaleTargetRef)
	}
}

func TestKEDATrigger(t *testing.T) {
	r := mustRender(t, values(t, `
worker: {projection: billing, group: billing-blue}
kafka: {brokers: [a:9093, b:9093], sasl: {mechanism: SCRAM-SHA-256}, tls: {enabled: true, caKey: ca.crt}}
tls: {secretName: kafka-ca}
credentials: {existingSecret: billing-creds}
autoscaling: {keda: {enabled: true, lagThreshold: "500"}}`))
	so := decodeAs[*scaledObject](t, r.one(t, "ScaledObject"))
	tr := so.Spec.Triggers[0]
	want := map[string]string{"bootstrapServers": "a:9093,b:9093", "consumerGroup": "billing-blue", "topic": "mabis.process-events", "lagThreshold": "500",
		"sasl": "scram_sha256", "tls": "enable"}
	for k, v := range want {
		if tr.Metadata[k] != v {
			t.Errorf("trigger metadata %s = %q, want %q", k, tr.Metadata[k], v)
		}
	}
	if tr.Type != "kafka" || tr.AuthenticationRef == nil {
		t.Fatalf("trigger type %q, authenticationRef %v", tr.Type, tr.AuthenticationRef)
	}
	ta := decodeAs[*triggerAuthentication](t, r.one(t, "TriggerAuthentication"))
	if ta.Name != tr.AuthenticationRef.Name {
		t.Errorf("authenticationRef %q, TriggerAuthentication %q", tr.AuthenticationRef.Name, ta.Name)
	}
	got := map[string]string{}
	for _, ref := range ta.Spec.SecretTargetRef {
		got[ref.Parameter] = ref.Name + "/" + ref.Key
	}
	wantRefs := map[string]string{"username": "billing-creds/kafka-username", "password": "billing-creds/kafka-password", "ca": "kafka-ca/ca.crt"}
	if !maps.Equal(got, wantRefs) {
		t.Errorf("TriggerAuthentication = %v, want %v (sasl and tls are trigger metadata)", got, wantRefs)
	}
	if len(r.byKind("Secret")) != 0 {
		t.Error("a Secret was created although credentials.existingSecret is set")
	}

	// The Secret the chart creates holds the credentials only: KEDA's sasl
	// and tls are trigger metadata.
	r = mustRender(t, values(t, `
kafka: {sasl: {mechanism: SCRAM-SHA-512}, tls: {enabled: true}}
credentials: {kafkaUsername: u, kafkaPassword: p}
autoscaling: {keda: {enabled: true}}`))
	sec := decodeAs[*corev1.Secret](t, r.one(t, "Secret"))
	if want := map[string]string{"kafka-username": "u", "kafka-password": "p"}; !maps.Equal(sec.StringData, want) {
		t.Errorf("created Secret = %v, want %v", sec.StringData, want)
	}
	if m := decodeAs[*scaledObject](t, r.one(t, "ScaledObject")).Spec.Triggers[0].Metadata; m["sasl"] != "scram_sha512" || m["tls"] != "enable" {
		t.Errorf("trigger metadata = %v, want sasl scram_sha512 and tls enable", m)
	}
	// Plaintext Kafka needs no TriggerAuthentication.
	if r := mustRender(t, values(t, "autoscaling: {keda: {enabled: true}}")); len(r.byKind("TriggerAuthentication")) != 0 {
		t.Error("TriggerAuthentication rendered for plaintext Kafka")
	}
}

func TestCredentialsFromSecret(t *testing.T) {
	const sasl = "kafka: {sasl: {mechanism: PLAIN}}\nredis: {auth: {enabled: true}}"
	secretRefs := func(t *testing.T, d *appsv1.Deployment) map[string]string {
		t.Helper()
		refs := map[string]string{}
		for _, e := range container(t, &d.Spec.Template.Spec, "worker").Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			} else if strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "USERNAME") {
				t.Errorf("%s is a literal value, not from a Secret", e.Name)
			}
		}
		return refs
	}

	t.Run("existing", func(t *testing.T) {
		r := mustRender(t, values(t, sasl, "credentials: {existingSecret: billing-creds, kafkaPassword: ignored}"))
		if n := len(r.byKind("Secret")); n != 0 {
			t.Errorf("rendered %d Secrets, want none with existingSecret", n)
		}
		refs := secretRefs(t, decodeAs[*appsv1.Deployment](t, r.one(t, "Deployment")))
		for _, k := range []string{"PROJECTOR_KAFKA_USERNAME", "PROJECTOR_KAFKA_PASSWORD", "PROJECTOR_REDIS_USERNAME", "PROJECTOR_REDIS_PASSWORD"} {
			if !strings.HasPrefix(refs[k], "billing-creds/") {
				t.Errorf("%s from %q, want the existing Secret billing-creds", k, refs[k])
			}
		}
		if strings.Contains(r.one(t, "Deployment").YAML, "ignored") {
			t.Error("a credential value leaked into the Deployment")
		}
	})

	t.Run("created", func(t *testing.T) {
		r := mustRender(t, values(t, sasl, "credentials: {kafkaUsername: billing, kafkaPassword: s3cret, redisPassword: r3dis}"))
		sec := decodeAs[*corev1.Secret](t, r.one(t, "Secret"))
		if sec.StringData["kafka-password"] != "s3cret" || sec.StringData["redis-password"] != "r3dis" {
			t.Errorf("created Secret = %v", sec.StringData)
		}
		d := decodeAs[*appsv1.Deployment](t, r.one(t, "Deployment"))
		refs := secretRefs(t, d)
		if refs["PROJECTOR_KAFKA_PASSWORD"] != sec.Name+"/kafka-password" || refs["PROJECTOR_REDIS_PASSWORD"] != sec.Name+"/redis-password" {
			t.Errorf("env refs = %v, want the created Secret %s", refs, sec.Name)
		}
		if d.Spec.Template.Annotations["checksum/credentials"] == "" {
			t.Error("no checksum annotation: a changed password would not roll the workers")
		}
		if strings.Contains(r.one(t, "Deployment").YAML, "s3cret") {
			t.Error("a password leaked into the Deployment")
		}
	})

	t.Run("missing", func(t *testing.T) {
		err := renderError(t, values(t, "kafka: {sasl: {mechanism: SCRAM-SHA-512}}"))
		if !strings.Contains(err.Error(), "credentials.existingSecret") {
			t.Errorf("error = %v, want it to name credentials.existingSecret", err)
		}
	})

	t.Run("no credentials needed", func(t *testing.T) {
		if n := len(mustRender(t, values(t, "")).byKind("Secret")); n != 0 {
			t.Errorf("rendered %d Secrets for a setup without credentials", n)
		}
	})
}

func TestSchemaRejects(t *testing.T) {
	for name, vals := range map[string]string{
		"unknown key":         "replicas: 3",
		"unknown mechanism":   "kafka: {sasl: {mechanism: GSSAPI}}",
		"no brokers":          "kafka: {brokers: []}",
		"bad replay time":     "replay: {enabled: true, command: replay, toTime: yesterday}",
		"rebuild from a time": "replay: {enabled: true, toTime: \"2026-01-01T00:00:00Z\"}",
		"bad replay command":  "replay: {enabled: true, command: reset}",
		"bad rebuild grace":   "replay: {enabled: true, grace: ten}",
		"bad run id":          "replay: {enabled: true, runId: Run_1}",
		"otlp http/json":      "otel: {protocol: http/json}",
	} {
		t.Run(name, func(t *testing.T) {
			if err := renderError(t, values(t, vals)); !strings.Contains(err.Error(), "schema") {
				t.Errorf("error = %v, want a schema violation", err)
			}
		})
	}
}

// TestRejectedRedisURLNotRepeated: a Redis URL the chart refuses is
// never repeated in the error (Helm's schema errors quote the value), since
// a refused URL is likely to carry a password.
func TestRejectedRedisURLNotRepeated(t *testing.T) {
	const planted = "Pl4nted-s3cret"
	for name, url := range map[string]string{
		"password":              "redis://user:" + planted + "@redis:6379/0",
		"password only":         "redis://:" + planted + "@redis:6379",
		"password with a slash": "rediss://user:a/" + planted + "@redis:6379",
		"wrong scheme":          "http://user:" + planted + "@redis:6379",
	} {
		t.Run(name, func(t *testing.T) {
			err := renderError(t, values(t, "redis: {url: '"+url+"'}"))
			if strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), "redis.url") {
				t.Errorf("error = %v, want one naming redis.url without the password", err)
			}
		})
	}
}

func TestTLSMounted(t *testing.T) {
	d := deployment(t, values(t, `
kafka: {tls: {enabled: true, caKey: kafka-ca.crt}}
redis: {url: "rediss://redis:6380/0", tls: {caKey: redis-ca.crt}}
tls: {secretName: projector-ca, mountPath: /etc/ca}`))
	c := container(t, &d.Spec.Template.Spec, "worker")
	env := envMap(c)
	if env["PROJECTOR_KAFKA_TLS"].Value != "true" || env["PROJECTOR_KAFKA_TLS_CA_FILE"].Value != "/etc/ca/kafka-ca.crt" ||
		env["PROJECTOR_REDIS_TLS_CA_FILE"].Value != "/etc/ca/redis-ca.crt" {
		t.Errorf("TLS env = %v %v %v", env["PROJECTOR_KAFKA_TLS"], env["PROJECTOR_KAFKA_TLS_CA_FILE"], env["PROJECTOR_REDIS_TLS_CA_FILE"])
	}
	var mounted bool
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/etc/ca" && vm.ReadOnly {
			for _, v := range d.Spec.Template.Spec.Volumes {
				mounted = mounted || v.Name == vm.Name && v.Secret != nil && v.Secret.SecretName == "projector-ca"
			}
		}
	}
	if !mounted {
		t.Error("the TLS Secret is not mounted read-only at /etc/ca")
	}
	err := renderError(t, values(t, "kafka: {tls: {enabled: true, caKey: ca.crt}}"))
	if !strings.Contains(err.Error(), "tls.secretName") {
		t.Errorf("error = %v, want it to name tls.secretName", err)
	}
}

func TestOTelOnlyWhenGiven(t *testing.T) {
	env := envMap(container(t, &deployment(t, values(t, `
otel:
  endpoint: http://collector:4318
  protocol: http/protobuf
  serviceName: billing
  resourceAttributes: {service.namespace: mabis, deployment.environment: prod}
  tracesSampler: always_on`)).Spec.Template.Spec, "worker"))
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_SERVICE_NAME":           "billing",
		"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment=prod,service.namespace=mabis",
		"OTEL_TRACES_SAMPLER":         "always_on",
	} {
		if env[k].Value != v {
			t.Errorf("%s = %q, want %q", k, env[k].Value, v)
		}
	}
}

func TestPDBAndServiceSelectWorkers(t *testing.T) {
	r := mustRender(t, values(t, "metrics: {serviceMonitor: {enabled: true}}", "replay: {enabled: true, schedule: '0 3 * * 0'}"))
	d := decodeAs[*appsv1.Deployment](t, r.one(t, "Deployment"))
	pdb := decodeAs[*policyv1.PodDisruptionBudget](t, r.one(t, "PodDisruptionBudget"))
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable = %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("PDB unhealthyPodEvictionPolicy = %v, want AlwaysAllow (drains must not hang while Kafka or Redis is down)", p)
	}
	podLabels := d.Spec.Template.Labels
	matches := func(sel map[string]string) bool {
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !matches(pdb.Spec.Selector.MatchLabels) {
		t.Errorf("PDB selector %v does not select the workers %v", pdb.Spec.Selector.MatchLabels, podLabels)
	}
	svc := decodeAs[*corev1.Service](t, r.one(t, "Service"))
	if !matches(svc.Spec.Selector) {
		t.Errorf("Service selector %v does not select the workers", svc.Spec.Selector)
	}
	sm := decodeAs[*serviceMonitor](t, r.one(t, "ServiceMonitor"))
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select the Service %v", sm.Spec.Selector.MatchLabels, svc.Labels)
		}
	}
	if sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %+v", sm.Spec.Endpoints[0])
	}
	// The replay pods must not count as workers (PDB, Service) nor be selected by the Deployment.
	for _, jobLabels := range []map[string]string{
		decodeAs[*batchv1.Job](t, r.one(t, "Job")).Spec.Template.Labels,
		decodeAs[*batchv1.CronJob](t, r.one(t, "CronJob")).Spec.JobTemplate.Spec.Template.Labels,
	} {
		for _, sel := range []map[string]string{d.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels, svc.Spec.Selector} {
			if labels.SelectorFromSet(sel).Matches(labels.Set(jobLabels)) {
				t.Errorf("worker selector %v selects the replay pods %v", sel, jobLabels)
			}
		}
	}
}

func TestReplayJob(t *testing.T) {
	if r := mustRender(t, values(t, "")); len(r.byKind("Job"))+len(r.byKind("CronJob")) != 0 {
		t.Fatalf("replay rendered by default: %v", r.kinds())
	}
	r := mustRender(t, values(t, `
worker: {projection: billing, group: billing-blue}
kafka: {sasl: {mechanism: PLAIN}}
credentials: {existingSecret: creds}
replay: {enabled: true, command: replay, runId: "2026-03-01", toTime: "2026-01-01T00:00:00Z"}`))
	m := r.one(t, "Job")
	if !m.Hook {
		t.Error("the replay Job is not a hook: a later upgrade would re-create it after its TTL")
	}
	for _, want := range []string{"helm.sh/hook: post-install,post-upgrade", "helm.sh/hook-delete-policy: before-hook-creation"} {
		if !strings.Contains(m.YAML, want) {
			t.Errorf("Job lacks %q", want)
		}
	}
	job := decodeAs[*batchv1.Job](t, m)
	if job.Name != "billing-projector-replay-2026-03-01" {
		t.Errorf("Job name %q, want the run id in it", job.Name)
	}
	if job.Spec.TTLSecondsAfterFinished == nil || *job.Spec.TTLSecondsAfterFinished <= 0 {
		t.Error("no ttlSecondsAfterFinished")
	}
	c := container(t, &job.Spec.Template.Spec, "projectorctl")
	if got := strings.Join(append(c.Command, c.Args...), " "); got != "/usr/local/bin/projectorctl replay billing --yes --wait --to-time 2026-01-01T00:00:00Z" {
		t.Errorf("replay command = %q", got)
	}
	env := envMap(c)
	if env["PROJECTOR_KAFKA_PASSWORD"].ValueFrom == nil || env["PROJECTOR_KAFKA_PASSWORD"].ValueFrom.SecretKeyRef.Name != "creds" ||
		env["PROJECTOR_GROUP"].Value != "billing-blue" || env["PROJECTOR_REDIS_URL"].Value == "" {
		t.Errorf("replay env lacks the worker's Kafka and Redis settings: %v", env)
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %s", job.Spec.Template.Spec.RestartPolicy)
	}

	// Without a run id the release revision makes the name unique per
	// upgrade; by default the Job rebuilds beside the live version.
	r = mustRender(t, values(t, "replay: {enabled: true}"))
	if name := r.one(t, "Job").Name; name != "billing-projector-replay-rev1" {
		t.Errorf("Job name %q, want the revision suffix", name)
	}
	c = container(t, &decodeAs[*batchv1.Job](t, r.one(t, "Job")).Spec.Template.Spec, "projectorctl")
	if got := strings.Join(c.Args, " "); got != "rebuild billing --yes --wait --grace 10m" {
		t.Errorf("default replay Job args = %q, want the blue/green rebuild", got)
	}
	r = mustRender(t, values(t, "replay: {enabled: true, grace: 1h, keep: true, wait: false}"))
	c = container(t, &decodeAs[*batchv1.Job](t, r.one(t, "Job")).Spec.Template.Spec, "projectorctl")
	if got := strings.Join(c.Args, " "); got != "rebuild billing --yes --grace 1h --keep" {
		t.Errorf("rebuild Job args = %q", got)
	}
}

func TestReplayCronJob(t *testing.T) {
	r := mustRender(t, values(t, "replay: {schedule: '0 3 * * 0'}"))
	if len(r.byKind("Job")) != 0 {
		t.Error("a schedule alone rendered a replay Job")
	}
	cj := decodeAs[*batchv1.CronJob](t, r.one(t, "CronJob"))
	if cj.Spec.Suspend == nil || !*cj.Spec.Suspend {
		t.Error("CronJob not suspended by default")
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy = %s, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	c := container(t, &cj.Spec.JobTemplate.Spec.Template.Spec, "projectorctl")
	if strings.Join(c.Args, " ") != "rebuild billing --yes --wait --grace 10m" {
		t.Errorf("args = %q", c.Args)
	}
	cj = decodeAs[*batchv1.CronJob](t, mustRender(t, values(t, "replay: {schedule: '@weekly', suspend: false}")).one(t, "CronJob"))
	if *cj.Spec.Suspend {
		t.Error("replay.suspend=false left the CronJob suspended")
	}
}

func TestKubeVersionEnforced(t *testing.T) {
	_, err := render(t, "v1.26.9", values(t, ""))
	if err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("render for 1.26 = %v, want the kubeVersion constraint to refuse it", err)
	}
}

// TestImageRequired: the chart has no default image (none is published); an install without
// image.repository fails with a message saying what to give, while `helm lint` of the bare
// defaults (scripts/test.sh) stays clean.
func TestImageRequired(t *testing.T) {
	err := renderError(t, map[string]any{})
	if !strings.Contains(err.Error(), "image.repository is required") || !strings.Contains(err.Error(), "docs/deploy.md") {
		t.Errorf("render without image.repository: %v", err)
	}
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = "projector"
	res := lint.Run([]string{chartDir}, map[string]any{})
	for _, msg := range res.Messages {
		if msg.Severity > support.InfoSev {
			t.Errorf("lint of the bare defaults: %s", msg)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("lint of the bare defaults: %v", err)
	}
	d := deployment(t, values(t, "image: {repository: ghcr.io/acme/orders-worker, tag: 2.1.0}"))
	if c := container(t, &d.Spec.Template.Spec, "worker"); c.Image != "ghcr.io/acme/orders-worker:2.1.0" {
		t.Errorf("image = %q", c.Image)
	}
}

// The escape hatches reach the worker pod: extra volumes and mounts,
// sidecars and init containers, beside what the chart renders itself.
func TestEscapeHatches(t *testing.T) {
	spec := deployment(t, values(t, `
extraVolumes: [{name: certs, secret: {secretName: client-cert}}]
extraVolumeMounts: [{name: certs, mountPath: /etc/client-cert, readOnly: true}]
extraContainers: [{name: shipper, image: "fluent/fluent-bit:3"}]
initContainers: [{name: wait, image: "busybox:1", command: [sh, -c, "true"]}]
`)).Spec.Template.Spec
	names := func(cs []corev1.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names(spec.Containers); !slices.Equal(got, []string{"worker", "shipper"}) {
		t.Errorf("containers %v", got)
	}
	if got := names(spec.InitContainers); !slices.Equal(got, []string{"wait"}) {
		t.Errorf("init containers %v", got)
	}
	if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "certs" }) ||
		!slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "tmp" }) {
		t.Errorf("volumes %v", spec.Volumes)
	}
	if !slices.ContainsFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/client-cert" }) {
		t.Errorf("mounts %v", spec.Containers[0].VolumeMounts)
	}
}

// Redis through Sentinel or on a Cluster, and client certificates for
// Kafka (mutual TLS) and Redis, reach the worker as the variables it reads;
// contradictions fail the install with a message naming the values.
func TestRedisModesAndClientCertificates(t *testing.T) {
	env := envMap(container(t, &deployment(t, values(t, `
redis: {url: "", addrs: ["sentinel-0:26379", "sentinel-1:26379"], sentinelMaster: mymaster, tls: {enabled: true, caKey: redis-ca.crt, certKey: redis.crt, keyKey: redis.key}}
kafka: {tls: {enabled: true, certKey: user.crt, keyKey: user.key}}
tls: {secretName: client-certs, mountPath: /etc/tls}`)).Spec.Template.Spec, "worker"))
	for name, want := range map[string]string{
		"PROJECTOR_REDIS_ADDRS": "sentinel-0:26379,sentinel-1:26379", "PROJECTOR_REDIS_SENTINEL_MASTER": "mymaster", "PROJECTOR_REDIS_TLS": "true",
		"PROJECTOR_REDIS_TLS_CERT_FILE": "/etc/tls/redis.crt", "PROJECTOR_REDIS_TLS_KEY_FILE": "/etc/tls/redis.key",
		"PROJECTOR_KAFKA_TLS_CERT_FILE": "/etc/tls/user.crt", "PROJECTOR_KAFKA_TLS_KEY_FILE": "/etc/tls/user.key",
	} {
		if env[name].Value != want {
			t.Errorf("%s = %q, want %q", name, env[name].Value, want)
		}
	}
	if _, ok := env["PROJECTOR_REDIS_URL"]; ok {
		t.Error("PROJECTOR_REDIS_URL is set beside PROJECTOR_REDIS_ADDRS")
	}
	cluster := envMap(container(t, &deployment(t, values(t, `redis: {url: "", addrs: ["redis-0:6379"], cluster: true}`)).Spec.Template.Spec, "worker"))
	if cluster["PROJECTOR_REDIS_CLUSTER"].Value != "true" || cluster["PROJECTOR_REDIS_ADDRS"].Value != "redis-0:6379" {
		t.Errorf("cluster env %v", cluster)
	}
	for vals, want := range map[string]string{
		`redis: {addrs: ["redis-0:6379"], cluster: true}`: "redis.url and redis.addrs are both set",
		`redis: {url: ""}`: "no Redis",
		`redis: {url: "", addrs: ["r:6379"], cluster: true, sentinelMaster: m}`: "exclude each other",
		`redis: {sentinelMaster: m}`: "need redis.addrs",
		"kafka: {tls: {enabled: true, certKey: user.crt}}\ntls: {secretName: s}":    "go together",
		"kafka: {tls: {certKey: user.crt, keyKey: user.key}}\ntls: {secretName: s}": "kafka.tls.enabled is false",
	} {
		if err := renderError(t, values(t, vals)); !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", vals, err, want)
		}
	}
}
