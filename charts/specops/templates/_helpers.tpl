{{/* Chart name, overridable. */}}
{{- define "specops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: <release>-specops, or the release name when it already says specops. */}}
{{- define "specops.fullname" -}}
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

{{- define "specops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "specops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "specops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "specops.labels" -}}
helm.sh/chart: {{ include "specops.chart" . }}
{{ include "specops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: specops
{{- end }}

{{- define "specops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "specops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "specops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator watches, as a list: settings.namespaces, or in namespace
scope the release namespace when none are given (empty in cluster scope = all).
*/}}
{{- define "specops.watchNamespaces" -}}
{{- $ns := .Values.settings.namespaces | default list }}
{{- if and (eq .Values.rbac.scope "namespace") (empty $ns) }}
{{- $ns = list .Release.Namespace }}
{{- end }}
{{- toJson $ns }}
{{- end }}

{{/* Port name /healthz is served on. */}}
{{- define "specops.healthPortName" -}}
{{- if kindIs "invalid" .Values.settings.healthPort }}metrics{{ else }}health{{ end }}
{{- end }}

{{/*
SPECOPS_* environment variables, one per settings key (fooBar -> SPECOPS_FOO_BAR).
Strings go as they are, lists comma-separated (the operator splits them), numbers
and booleans as JSON. null keys and empty lists are left out so the operator's
default applies,
except identity and leaseNamespace, which come from the pod's name and namespace.
*/}}
{{- define "specops.settingsEnv" -}}
{{- $settings := deepCopy .Values.settings }}
{{- $_ := set $settings "namespaces" (include "specops.watchNamespaces" . | fromJsonArray) }}
{{- $fromPod := dict "identity" "metadata.name" "leaseNamespace" "metadata.namespace" }}
{{- range $key := keys $settings | sortAlpha }}
{{- $value := get $settings $key }}
{{- $name := printf "SPECOPS_%s" ($key | snakecase | upper) }}
{{- if and (eq $key "hubToken") $.Values.hubTokenSecret.name }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.hubTokenSecret.name }}
      key: {{ $.Values.hubTokenSecret.key | default "HF_TOKEN" }}
{{- else if and (kindIs "invalid" $value) (hasKey $fromPod $key) }}
- name: {{ $name }}
  valueFrom:
    fieldRef:
      fieldPath: {{ get $fromPod $key }}
{{- else if kindIs "slice" $value }}
{{- if $value }}
- name: {{ $name }}
  value: {{ join "," $value | quote }}
{{- end }}
{{- else if kindIs "string" $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- else if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ toJson $value | quote }}
{{- end }}
{{- end }}
{{- end }}
