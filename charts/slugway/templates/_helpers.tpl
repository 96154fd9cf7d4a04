{{/* Chart name, possibly overridden. */}}
{{- define "slugway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every namespaced object's name. */}}
{{- define "slugway.fullname" -}}
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

{{- define "slugway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "slugway.labels" -}}
helm.sh/chart: {{ include "slugway.chart" . }}
app.kubernetes.io/name: {{ include "slugway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slugway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include "slugway.selectorLabels" (list . "controller") */}}
{{- define "slugway.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "slugway.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component. */}}
{{- define "slugway.componentLabels" -}}
{{ include "slugway.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "slugway.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end }}

{{- define "slugway.controllerServiceAccountName" -}}
{{- default (printf "%s-controller" (include "slugway.fullname" .)) .Values.controller.serviceAccount.name }}
{{- end }}

{{- define "slugway.proxyServiceAccountName" -}}
{{- default (printf "%s-proxy" (include "slugway.fullname" .)) .Values.proxy.serviceAccount.name }}
{{- end }}

{{- define "slugway.webhookServiceName" -}}
{{- printf "%s-webhook" (include "slugway.fullname" .) }}
{{- end }}

{{- define "slugway.webhookCertSecretName" -}}
{{- printf "%s-webhook-tls" (include "slugway.fullname" .) }}
{{- end }}

{{- define "slugway.controllerReplicas" -}}
{{- if .Values.ha.enabled }}{{ max 2 (int .Values.controller.replicas) }}{{ else }}{{ int .Values.controller.replicas }}{{ end }}
{{- end }}

{{- define "slugway.proxyReplicas" -}}
{{- if .Values.ha.enabled }}{{ max 2 (int .Values.proxy.replicas) }}{{ else }}{{ int .Values.proxy.replicas }}{{ end }}
{{- end }}

{{/*
The webhook TLS material, generated once per render and shared by the Secret and the
webhook configurations. An existing Secret (from an earlier install) is reused, so an
upgrade does not change the CA that the apiserver trusts.
Returns a dict with keys ca.crt, tls.crt, tls.key (PEM).
*/}}
{{- define "slugway.webhookTLS" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "slugway.webhookCertSecretName" .) }}
{{- if and $secret $secret.data (index $secret.data "ca.crt") (index $secret.data "tls.crt") (index $secret.data "tls.key") }}
{{- dict "ca.crt" (index $secret.data "ca.crt" | b64dec) "tls.crt" (index $secret.data "tls.crt" | b64dec) "tls.key" (index $secret.data "tls.key" | b64dec) | toYaml }}
{{- else }}
{{- $svc := include "slugway.webhookServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.webhook.certValidityDays }}
{{- $ca := genCA (printf "%s-ca" (include "slugway.fullname" .)) $days }}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $dns $days $ca }}
{{- dict "ca.crt" $ca.Cert "tls.crt" $cert.Cert "tls.key" $cert.Key | toYaml }}
{{- end }}
{{- end }}
