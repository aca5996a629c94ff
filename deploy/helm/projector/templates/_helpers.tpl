{{/* Names: the chart name, and "<release>-<chart>" truncated to 63 characters (DNS label). */}}
{{- define "projector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "projector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "projector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "projector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "projector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every resource; "component" tells the worker from the replay jobs. */}}
{{- define "projector.labels" -}}
helm.sh/chart: {{ include "projector.chart" . }}
{{ include "projector.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: projector
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "projector.workerSelectorLabels" -}}
{{ include "projector.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}

{{/* The worker image. There is no default: no image is published, each user builds theirs. */}}
{{- define "projector.image" -}}
{{- $repo := required "image.repository is required: the chart runs your worker image, built from your main with the repository's Dockerfile (see docs/deploy.md), e.g. --set image.repository=registry.example.com/orders-worker --set image.tag=1.0.0" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "projector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "projector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The consumer group the workers join: worker.group, or the projection name. */}}
{{- define "projector.group" -}}
{{- default .Values.worker.projection .Values.worker.group -}}
{{- end -}}

{{/* PROJECTOR_SHUTDOWN_TIMEOUT, kept below terminationGracePeriodSeconds by the margin. */}}
{{- define "projector.shutdownTimeout" -}}
{{- $grace := int .Values.shutdown.gracePeriodSeconds -}}
{{- $margin := int .Values.shutdown.marginSeconds -}}
{{- if le $grace $margin -}}
{{- fail (printf "shutdown.gracePeriodSeconds (%d) must be larger than shutdown.marginSeconds (%d): the worker needs time to finish its batch, store cursors, commit and leave the group" $grace $margin) -}}
{{- end -}}
{{- printf "%ds" (sub $grace $margin) -}}
{{- end -}}

{{/* Credentials: does any consumer need the Secret, and which Secret is it. */}}
{{/* A username and password for Kafka: PLAIN and SCRAM (OAUTHBEARER reads a token file). */}}
{{- define "projector.kafkaUserPass" -}}
{{- if has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512") -}}true{{- end -}}
{{- end -}}

{{/* The chart's TriggerAuthentication: only for real credentials (sasl and tls are trigger
     metadata), and not when autoscaling.keda.authenticationRef names one of the user's. */}}
{{- define "projector.kedaNeedsAuth" -}}
{{- $k := .Values.kafka -}}
{{- if and .Values.autoscaling.keda.enabled (not .Values.autoscaling.keda.authenticationRef) (or (include "projector.kafkaUserPass" .) (and $k.tls.enabled (or $k.tls.caKey $k.tls.certKey))) -}}true{{- end -}}
{{- end -}}

{{- define "projector.needsCredentials" -}}
{{- if or (include "projector.kafkaUserPass" .) .Values.redis.auth.enabled .Values.redis.auth.sentinel -}}true{{- end -}}
{{- end -}}

{{- define "projector.createCredentialsSecret" -}}
{{- if and (include "projector.needsCredentials" .) (not .Values.credentials.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "projector.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "projector.fullname" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{/* KEDA's names for the SASL mechanisms. */}}
{{- define "projector.kedaSasl" -}}
{{- $m := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" "OAUTHBEARER" "oauthbearer" -}}
{{- get $m .Values.kafka.sasl.mechanism -}}
{{- end -}}

{{/* Checks across values that the schema cannot express. Included by the Deployment. */}}
{{- define "projector.validate" -}}
{{- $_ := include "projector.image" . -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- fail "autoscaling.hpa.enabled and autoscaling.keda.enabled are both true: KEDA manages its own HorizontalPodAutoscaler, enable only one of them" -}}
{{- end -}}
{{- if and (or .Values.kafka.tls.caKey .Values.redis.tls.caKey .Values.kafka.tls.certKey .Values.redis.tls.certKey) (not .Values.tls.secretName) -}}
{{- fail "a kafka.tls or redis.tls key (caKey, certKey) is set but tls.secretName is empty: name the Secret that holds them" -}}
{{- end -}}
{{- if ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey) -}}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together" -}}
{{- end -}}
{{- if ne (empty .Values.redis.tls.certKey) (empty .Values.redis.tls.keyKey) -}}
{{- fail "redis.tls.certKey and redis.tls.keyKey go together" -}}
{{- end -}}
{{- if and .Values.kafka.tls.certKey (not .Values.kafka.tls.enabled) -}}
{{- fail "kafka.tls.certKey is set but kafka.tls.enabled is false" -}}
{{- end -}}
{{- /* Not a schema pattern: Helm's schema errors repeat the rejected value, and a
       rejected URL is likely to carry a password. */ -}}
{{- if and .Values.redis.url (not (regexMatch "^rediss?://([^:@/]+@)?[^@/]+(/[0-9]*)?$" .Values.redis.url)) -}}
{{- fail "redis.url is not redis://[user@]host:port[/db] or rediss://… without a password (its value is not shown here: it may carry one); put the password in credentials.redisPassword or an existing Secret" -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.addrs -}}
{{- fail "redis.url and redis.addrs are both set: give one (set redis.url to \"\" for Sentinel or Cluster)" -}}
{{- end -}}
{{- if not (or .Values.redis.url .Values.redis.addrs) -}}
{{- fail "no Redis: set redis.url, or redis.addrs (with redis.sentinelMaster or redis.cluster)" -}}
{{- end -}}
{{- if and .Values.redis.cluster .Values.redis.sentinelMaster -}}
{{- fail "redis.cluster and redis.sentinelMaster exclude each other" -}}
{{- end -}}
{{- if and (or .Values.redis.cluster .Values.redis.sentinelMaster) (not .Values.redis.addrs) -}}
{{- fail "redis.cluster and redis.sentinelMaster need redis.addrs" -}}
{{- end -}}
{{- if and .Values.redis.auth.sentinel (not .Values.redis.sentinelMaster) -}}
{{- fail "redis.auth.sentinel needs redis.sentinelMaster (and the Sentinels in redis.addrs)" -}}
{{- end -}}
{{- if and .Values.kafka.tls.caKey (not .Values.kafka.tls.enabled) -}}
{{- fail "kafka.tls.caKey is set but kafka.tls.enabled is false" -}}
{{- end -}}
{{- if and (eq .Values.kafka.sasl.mechanism "OAUTHBEARER") (not .Values.kafka.sasl.oauthbearer.tokenPath) -}}
{{- fail "kafka.sasl.mechanism OAUTHBEARER needs kafka.sasl.oauthbearer.tokenPath (mount the token with extraVolumes and extraVolumeMounts)" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.oauthbearer.tokenPath (ne .Values.kafka.sasl.mechanism "OAUTHBEARER") -}}
{{- fail "kafka.sasl.oauthbearer.tokenPath is set but kafka.sasl.mechanism is not OAUTHBEARER" -}}
{{- end -}}
{{- if .Values.autoscaling.keda.enabled -}}
{{- if and (eq .Values.kafka.sasl.mechanism "OAUTHBEARER") (not .Values.autoscaling.keda.authenticationRef) -}}
{{- fail "autoscaling.keda with kafka.sasl.mechanism OAUTHBEARER needs autoscaling.keda.authenticationRef: KEDA cannot read the workers' token file; name a TriggerAuthentication that gives KEDA its own OAuth client (username, password, oauthTokenEndpointUri, scopes; see the chart README)" -}}
{{- end -}}
{{- range $k, $_ := .Values.autoscaling.keda.extraMetadata -}}
{{- if has $k (list "sasl" "tls" "bootstrapServers" "consumerGroup" "topic") -}}
{{- fail (printf "autoscaling.keda.extraMetadata.%s: the chart sets this trigger metadata itself (sasl and tls from kafka.sasl.mechanism and kafka.tls.enabled)" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.redis.tls.caKey (not (or (hasPrefix "rediss://" .Values.redis.url) .Values.redis.tls.enabled)) -}}
{{- fail "redis.tls.caKey is set but redis.url does not start with rediss:// and redis.tls.enabled is false" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs service.enabled: a ServiceMonitor scrapes through a Service" -}}
{{- end -}}
{{- if include "projector.createCredentialsSecret" . -}}
{{- if include "projector.kafkaUserPass" . -}}
{{- $_ := required "kafka.sasl.mechanism is set: give credentials.existingSecret, or credentials.kafkaUsername and credentials.kafkaPassword for a Secret the chart creates" .Values.credentials.kafkaUsername -}}
{{- $_ := required "kafka.sasl.mechanism is set: give credentials.existingSecret, or credentials.kafkaPassword for a Secret the chart creates" .Values.credentials.kafkaPassword -}}
{{- end -}}
{{- if .Values.redis.auth.enabled -}}
{{- $_ := required "redis.auth.enabled is true: give credentials.existingSecret, or credentials.redisPassword for a Secret the chart creates" .Values.credentials.redisPassword -}}
{{- end -}}
{{- if .Values.redis.auth.sentinel -}}
{{- $_ := required "redis.auth.sentinel is true: give credentials.existingSecret, or credentials.redisSentinelPassword for a Secret the chart creates" .Values.credentials.redisSentinelPassword -}}
{{- end -}}
{{- end -}}
{{- $_ := include "projector.shutdownTimeout" . -}}
{{- end -}}

{{/*
Environment shared by the worker and the replay jobs. Credentials only ever come from the Secret;
the TLS CA files from the mounted TLS Secret.
*/}}
{{- define "projector.env" -}}
{{- $secret := include "projector.credentialsSecretName" . -}}
{{- $keys := .Values.credentials.keys -}}
- name: PROJECTOR_KAFKA_BROKERS
  value: {{ join "," .Values.kafka.brokers | quote }}
- name: PROJECTOR_TOPIC
  value: {{ .Values.worker.topic | quote }}
- name: PROJECTOR_PROJECTION
  value: {{ .Values.worker.projection | quote }}
{{- with .Values.worker.group }}
- name: PROJECTOR_GROUP
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.addrs }}
- name: PROJECTOR_REDIS_ADDRS
  value: {{ join "," .Values.redis.addrs | quote }}
{{- with .Values.redis.sentinelMaster }}
- name: PROJECTOR_REDIS_SENTINEL_MASTER
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.cluster }}
- name: PROJECTOR_REDIS_CLUSTER
  value: "true"
{{- end }}
{{- else }}
- name: PROJECTOR_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- if .Values.redis.tls.enabled }}
- name: PROJECTOR_REDIS_TLS
  value: "true"
{{- end }}
{{- with .Values.redis.waitReplicas }}
- name: PROJECTOR_REDIS_WAIT_REPLICAS
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.auth.enabled }}
- name: PROJECTOR_REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.redisUsername }}
      optional: true
- name: PROJECTOR_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.redisPassword }}
{{- end }}
{{- if .Values.redis.auth.sentinel }}
- name: PROJECTOR_REDIS_SENTINEL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.redisSentinelUsername }}
      optional: true
- name: PROJECTOR_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.redisSentinelPassword }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- name: PROJECTOR_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
{{- end }}
{{- if eq .Values.kafka.sasl.mechanism "OAUTHBEARER" }}
- name: PROJECTOR_KAFKA_OAUTH_TOKEN_FILE
  value: {{ .Values.kafka.sasl.oauthbearer.tokenPath | quote }}
{{- end }}
{{- if include "projector.kafkaUserPass" . }}
- name: PROJECTOR_KAFKA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.kafkaUsername }}
- name: PROJECTOR_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.kafkaPassword }}
{{- end }}
- name: PROJECTOR_KAFKA_TLS
  value: {{ .Values.kafka.tls.enabled | toString | quote }}
{{- with .Values.kafka.tls.caKey }}
- name: PROJECTOR_KAFKA_TLS_CA_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath . | quote }}
{{- end }}
{{- with .Values.redis.tls.caKey }}
- name: PROJECTOR_REDIS_TLS_CA_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath . | quote }}
{{- end }}
{{- with .Values.kafka.tls.certKey }}
- name: PROJECTOR_KAFKA_TLS_CERT_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath . | quote }}
- name: PROJECTOR_KAFKA_TLS_KEY_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath $.Values.kafka.tls.keyKey | quote }}
{{- end }}
{{- with .Values.redis.tls.certKey }}
- name: PROJECTOR_REDIS_TLS_CERT_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath . | quote }}
- name: PROJECTOR_REDIS_TLS_KEY_FILE
  value: {{ printf "%s/%s" $.Values.tls.mountPath $.Values.redis.tls.keyKey | quote }}
{{- end }}
- name: PROJECTOR_LOG_LEVEL
  value: {{ .Values.worker.logLevel | quote }}
- name: PROJECTOR_LOG_FORMAT
  value: {{ .Values.worker.logFormat | quote }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.serviceName }}
- name: OTEL_SERVICE_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.resourceAttributes }}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- with .Values.otel.tracesSampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.eventSpans }}
- name: PROJECTOR_TRACE_EVENT_SPANS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.worker.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* /tmp is the only writable path: the root filesystem is read-only. */}}
{{- define "projector.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "projector.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The replay Job spec, shared by the one-off Job and the CronJob's jobTemplate.
projectorctl replay <projection> --yes [--wait] [--to-time T].
*/}}
{{- define "projector.replayJobSpec" -}}
backoffLimit: {{ .Values.replay.backoffLimit }}
{{- with .Values.replay.activeDeadlineSeconds }}
activeDeadlineSeconds: {{ . }}
{{- end }}
ttlSecondsAfterFinished: {{ .Values.replay.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "projector.selectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: replay
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "projector.serviceAccountName" . }}
    automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    containers:
      - name: projectorctl
        image: {{ include "projector.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        command: ["/usr/local/bin/projectorctl"]
        args:
          {{- if eq .Values.replay.command "rebuild" }}
          - rebuild
          - {{ .Values.worker.projection | quote }}
          - --yes
          {{- if .Values.replay.wait }}
          - --wait
          {{- end }}
          - --grace
          - {{ .Values.replay.grace | quote }}
          {{- if .Values.replay.keep }}
          - --keep
          {{- end }}
          {{- else }}
          - replay
          - {{ .Values.worker.projection | quote }}
          - --yes
          {{- if .Values.replay.wait }}
          - --wait
          {{- end }}
          {{- with .Values.replay.toTime }}
          - --to-time
          - {{ . | quote }}
          {{- end }}
          {{- end }}
          {{- range .Values.replay.extraArgs }}
          - {{ . | quote }}
          {{- end }}
        env:
          {{- include "projector.env" . | nindent 10 }}
        {{- with .Values.worker.extraEnvFrom }}
        envFrom:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.replay.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          {{- include "projector.volumeMounts" . | nindent 10 }}
    volumes:
      {{- include "projector.volumes" . | nindent 6 }}
    {{- with .Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
