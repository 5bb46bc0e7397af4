{{/* The chart's name, or nameOverride. */}}
{{- define "dubebox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release's, with the chart's unless it holds it. */}}
{{- define "dubebox.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "dubebox.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "dubebox.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "dubebox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dubebox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dubebox.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "dubebox.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The container's port: HTTP_ADDR's, or the service's default 5000. The
     probes and the Service name the port, so they follow it. */}}
{{- define "dubebox.port" -}}
{{- $addr := toString (default ":5000" .Values.config.HTTP_ADDR) }}
{{- splitList ":" $addr | last | int }}
{{- end }}

{{/* The port /metrics is served on: METRICS_ADDR's. The chart always sets
     one, so that /metrics is not on the API's port, which the Ingress
     routes. */}}
{{- define "dubebox.metricsPort" -}}
{{- splitList ":" (toString (required "config.METRICS_ADDR is required: the chart serves /metrics on a port of its own, which the Ingress does not route" .Values.config.METRICS_ADDR)) | last | int }}
{{- end }}

{{/* The chart refuses to install a DubeBox without a token, unless
     ALLOW_NO_AUTH says so: without one, anyone who reaches the Service
     could read and write. An existingSecret must hold API_TOKEN. */}}
{{- define "dubebox.requireToken" -}}
{{- if not (or .Values.secrets.existingSecret .Values.secrets.values.API_TOKEN (eq (toString .Values.config.ALLOW_NO_AUTH) "true")) }}
{{- fail "set secrets.values.API_TOKEN (openssl rand -hex 32), or secrets.existingSecret naming a Secret with API_TOKEN: DubeBox without a token lets anyone who reaches it read and write (config.ALLOW_NO_AUTH=\"true\" if you mean that)" }}
{{- end }}
{{- end }}

{{/* The settings the ConfigMap holds: the non-empty ones of .Values.config. */}}
{{- define "dubebox.config" -}}
{{- range $name, $value := .Values.config }}
{{- if ne (toString $value) "" }}
{{ $name }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The secret settings the chart's own Secret holds. */}}
{{- define "dubebox.secrets" -}}
{{- range $name, $value := .Values.secrets.values }}
{{- if ne (toString $value) "" }}
{{ $name }}: {{ toString $value | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret the pods read, if any: an existing one, or the chart's own. */}}
{{- define "dubebox.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if trim (include "dubebox.secrets" .) }}
{{- include "dubebox.fullname" . }}
{{- end }}
{{- end }}
