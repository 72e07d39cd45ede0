{{/* Names, labels, and the rules between values that values.schema.json cannot say. */}}

{{- define "qulab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "qulab.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "qulab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qulab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "qulab.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "qulab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: qulab
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "qulab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qulab.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "qulab.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A number as the server parses it: values arrive as float64, which Go would print
     as 1.6777216e+07. */}}
{{- define "qulab.scalar" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Where the server finds the files the chart mounts. */}}
{{- define "qulab.authDir" -}}/etc/qulab/auth{{- end }}
{{- define "qulab.tlsDir" -}}/etc/qulab/tls{{- end }}
{{- define "qulab.probeTlsDir" -}}/etc/qulab/probe-tls{{- end }}
{{- define "qulab.rolesDir" -}}/etc/qulab/roles{{- end }}

{{/* Which credentials are configured: "true" or "". */}}
{{- define "qulab.apiKeysGiven" -}}
{{- if or .Values.auth.apiKeys.existingSecret .Values.auth.apiKeys.keys }}true{{ end }}
{{- end }}
{{- define "qulab.hs256Given" -}}
{{- if or .Values.auth.jwt.hs256.existingSecret .Values.auth.jwt.hs256.secret }}true{{ end }}
{{- end }}
{{- define "qulab.publicKeysGiven" -}}
{{- if or .Values.auth.jwt.publicKeys.existingSecret .Values.auth.jwt.publicKeys.keys }}true{{ end }}
{{- end }}
{{- define "qulab.mtls" -}}
{{- if and .Values.tls.enabled .Values.tls.clientAuth }}true{{ end }}
{{- end }}
{{/* Generate an API key: asked for, in auto mode, and nothing else configured. */}}
{{- define "qulab.generateApiKey" -}}
{{- $given := or (include "qulab.apiKeysGiven" .) (include "qulab.hs256Given" .) (include "qulab.publicKeysGiven" .) (include "qulab.mtls" .) }}
{{- if and (eq .Values.auth.mode "auto") .Values.auth.apiKeys.generate (not $given) }}true{{ end }}
{{- end }}

{{/* The Secret holding each credential file, and its key there. */}}
{{- define "qulab.apiKeysSource" -}}
{{- if .Values.auth.apiKeys.existingSecret }}
{{- dict "name" .Values.auth.apiKeys.existingSecret "key" .Values.auth.apiKeys.existingSecretKey | toJson }}
{{- else if .Values.auth.apiKeys.keys }}
{{- dict "name" (printf "%s-auth" (include "qulab.fullname" .)) "key" "api-keys.json" | toJson }}
{{- else if include "qulab.generateApiKey" . }}
{{- dict "name" (printf "%s-generated-api-key" (include "qulab.fullname" .)) "key" "api-keys.json" | toJson }}
{{- else }}{}{{- end }}
{{- end }}
{{- define "qulab.hs256Source" -}}
{{- if .Values.auth.jwt.hs256.existingSecret }}
{{- dict "name" .Values.auth.jwt.hs256.existingSecret "key" .Values.auth.jwt.hs256.existingSecretKey | toJson }}
{{- else if .Values.auth.jwt.hs256.secret }}
{{- dict "name" (printf "%s-auth" (include "qulab.fullname" .)) "key" "jwt-secret" | toJson }}
{{- else }}{}{{- end }}
{{- end }}
{{- define "qulab.publicKeysSource" -}}
{{- if .Values.auth.jwt.publicKeys.existingSecret }}
{{- dict "name" .Values.auth.jwt.publicKeys.existingSecret "key" .Values.auth.jwt.publicKeys.existingSecretKey | toJson }}
{{- else if .Values.auth.jwt.publicKeys.keys }}
{{- dict "name" (printf "%s-auth" (include "qulab.fullname" .)) "key" "jwt-public-keys" | toJson }}
{{- else }}{}{{- end }}
{{- end }}
{{- define "qulab.tlsSecret" -}}
{{- default (printf "%s-tls" (include "qulab.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* Seconds from the stop request to SIGKILL. */}}
{{- define "qulab.terminationGracePeriodSeconds" -}}
{{- $floor := add .Values.preStopSleepSeconds (ceil .Values.server.drainGraceSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 15 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The address the in-container probe dials. */}}
{{- define "qulab.probeAddress" -}}
{{- if contains ":" .Values.server.listenAddress }}[::1]{{ else }}127.0.0.1{{ end }}:{{ .Values.server.grpcPort }}
{{- end }}

{{/* One health probe: the kubelet's own gRPC probe, or, with TLS (which the kubelet's
     cannot speak), grpc-health-probe run in the container. */}}
{{- define "qulab.probe" -}}
{{- $root := index . 0 }}
{{- $service := index . 1 }}
{{- $timing := index . 2 }}
{{- if $root.Values.tls.enabled }}
exec:
  command:
    - grpc-health-probe
    - -addr={{ include "qulab.probeAddress" $root }}
    - -service={{ $service }}
    - -connect-timeout={{ $timing.timeoutSeconds }}s
    - -rpc-timeout={{ $timing.timeoutSeconds }}s
    - -tls
    - -tls-no-verify
    {{- if include "qulab.mtls" $root }}
    {{- $dir := ternary (include "qulab.probeTlsDir" $root) (include "qulab.tlsDir" $root) (ne $root.Values.tls.probeClientSecret "") }}
    - -tls-client-cert={{ $dir }}/tls.crt
    - -tls-client-key={{ $dir }}/tls.key
    {{- end }}
{{- else }}
grpc:
  port: {{ $root.Values.server.grpcPort }}
  {{- if $service }}
  service: {{ $service }}
  {{- end }}
{{- end }}
{{ toYaml $timing }}
{{- end }}

{{/* Rules across values; each failure names the values to change. */}}
{{- define "qulab.validate" -}}
{{- $given := or (include "qulab.apiKeysGiven" .) (include "qulab.hs256Given" .) (include "qulab.publicKeysGiven" .) (include "qulab.mtls" .) (include "qulab.generateApiKey" .) }}
{{- if and (eq .Values.auth.mode "auto") (not $given) }}
{{- fail "qulab: no credentials: set auth.apiKeys.keys or .existingSecret, auth.jwt.hs256 or .publicKeys, or tls.clientAuth (or leave auth.apiKeys.generate on); auth.mode=none serves without authentication" }}
{{- end }}
{{- if and (or (include "qulab.hs256Given" .) (include "qulab.publicKeysGiven" .)) (not .Values.auth.jwt.audience) }}
{{- fail "qulab: auth.jwt.audience must be set when bearer tokens are accepted" }}
{{- end }}
{{- if and .Values.auth.jwt.hs256.existingSecret .Values.auth.jwt.hs256.secret }}
{{- fail "qulab: auth.jwt.hs256: give secret or existingSecret, not both" }}
{{- end }}
{{- if and .Values.auth.jwt.publicKeys.existingSecret .Values.auth.jwt.publicKeys.keys }}
{{- fail "qulab: auth.jwt.publicKeys: give keys or existingSecret, not both" }}
{{- end }}
{{- if and .Values.auth.apiKeys.existingSecret .Values.auth.apiKeys.keys }}
{{- fail "qulab: auth.apiKeys: give keys or existingSecret, not both" }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- if and (not .Values.tls.existingSecret) (not (and .Values.tls.cert .Values.tls.key)) }}
{{- fail "qulab: tls.enabled needs tls.existingSecret, or tls.cert and tls.key" }}
{{- end }}
{{- if and .Values.tls.existingSecret (or .Values.tls.cert .Values.tls.key) }}
{{- fail "qulab: tls: give existingSecret, or cert and key, not both" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.existingSecret) (not .Values.tls.clientCA) }}
{{- fail "qulab: tls.clientAuth needs tls.clientCA, or a tls.existingSecret holding ca.crt" }}
{{- end }}
{{- else if .Values.tls.clientAuth }}
{{- fail "qulab: tls.clientAuth needs tls.enabled" }}
{{- end }}
{{- $floor := add .Values.preStopSleepSeconds (ceil .Values.server.drainGraceSeconds) }}
{{- if le (int (include "qulab.terminationGracePeriodSeconds" .)) (int $floor) }}
{{- fail (printf "qulab: terminationGracePeriodSeconds must exceed preStopSleepSeconds + server.drainGraceSeconds (%d), or the drain is cut by SIGKILL" (int $floor)) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "qulab: podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.podsMetric.enabled) }}
{{- fail "qulab: autoscaling needs targetCPUUtilizationPercentage or podsMetric.enabled" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "qulab: autoscaling.maxReplicas is below autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "qulab: metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.otel.headersSecret.name (not .Values.otel.headersSecret.key) }}
{{- fail "qulab: otel.headersSecret needs both name and key" }}
{{- end }}
{{- end }}

{{/* The server's settings: the ConfigMap's data, and what the pods' checksum is of. */}}
{{- define "qulab.config" -}}
QULAB_HOST: {{ .Values.server.listenAddress | quote }}
QULAB_PORT: {{ include "qulab.scalar" .Values.server.grpcPort | quote }}
QULAB_WORKERS: {{ include "qulab.scalar" .Values.server.workers | quote }}
QULAB_DRAIN_GRACE_S: {{ include "qulab.scalar" .Values.server.drainGraceSeconds | quote }}
QULAB_MAX_CONNECTION_AGE_S: {{ include "qulab.scalar" .Values.server.maxConnectionAgeSeconds | quote }}
QULAB_MAX_CONNECTION_AGE_GRACE_S: {{ include "qulab.scalar" .Values.server.maxConnectionAgeGraceSeconds | quote }}
QULAB_LOG_LEVEL: {{ .Values.server.logLevel | quote }}
QULAB_METRICS: {{ .Values.metrics.enabled | quote }}
QULAB_METRICS_PORT: {{ include "qulab.scalar" .Values.server.metricsPort | quote }}
QULAB_AUTH: {{ .Values.auth.mode | quote }}
{{- if ne (include "qulab.apiKeysSource" . ) "{}" }}
QULAB_API_KEYS_FILE: {{ printf "%s/api-keys.json" (include "qulab.authDir" .) | quote }}
{{- end }}
{{- if include "qulab.hs256Given" . }}
QULAB_JWT_SECRET_FILE: {{ printf "%s/jwt-secret" (include "qulab.authDir" .) | quote }}
{{- end }}
{{- if include "qulab.publicKeysGiven" . }}
QULAB_JWT_PUBLIC_KEYS: {{ printf "%s/jwt-public-keys" (include "qulab.authDir" .) | quote }}
{{- end }}
{{- with .Values.auth.jwt.audience }}
QULAB_JWT_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with .Values.auth.jwt.issuer }}
QULAB_JWT_ISSUER: {{ . | quote }}
{{- end }}
QULAB_JWT_ROLES_CLAIM: {{ .Values.auth.jwt.rolesClaim | quote }}
{{- if .Values.auth.roles }}
QULAB_ROLES_FILE: {{ printf "%s/roles.json" (include "qulab.rolesDir" .) | quote }}
{{- end }}
{{- if .Values.tls.enabled }}
QULAB_TLS_CERT_FILE: {{ printf "%s/tls.crt" (include "qulab.tlsDir" .) | quote }}
QULAB_TLS_KEY_FILE: {{ printf "%s/tls.key" (include "qulab.tlsDir" .) | quote }}
{{- if .Values.tls.clientAuth }}
QULAB_TLS_CLIENT_CA_FILE: {{ printf "%s/ca.crt" (include "qulab.tlsDir" .) | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.server.config }}
{{ $name }}: {{ include "qulab.scalar" $value | quote }}
{{- end }}
{{- with .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ $.Values.otel.protocol | quote }}
OTEL_TRACES_SAMPLER: {{ $.Values.otel.sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $.Values.otel.samplerArg | quote }}
OTEL_SERVICE_NAME: {{ default (include "qulab.fullname" $) $.Values.otel.serviceName | quote }}
{{- end }}
{{- end }}
