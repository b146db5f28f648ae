{{/* Names and labels shared by every object of the chart. */}}

{{- define "cxr.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or the release name alone when it already contains the chart's name */}}
{{- define "cxr.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cxr.gatewayName" -}}
{{- printf "%s-gateway" (include "cxr.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cxr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* the service's pods; the gateway's differ by component */}}
{{- define "cxr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: inference
{{- end }}

{{- define "cxr.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "cxr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dicom-gateway
{{- end }}

{{- define "cxr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxr.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* the Secret with the keys file (and the gateway's key): the user's, or the chart's */}}
{{- define "cxr.secretName" -}}
{{- default (printf "%s-api-keys" (include "cxr.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* whether the service has keys at all (the chart refuses to render an open service by accident) */}}
{{- define "cxr.hasKeys" -}}
{{- if or .Values.apiKeys.existingSecret .Values.apiKeys.keys (and .Values.gateway.enabled .Values.gateway.apiKey) }}true{{ end }}
{{- end }}

{{- define "cxr.threads" -}}
{{- if .Values.gpu.enabled }}{{ .Values.gpu.threads | int }}{{ else }}{{ .Values.threads | int }}{{ end }}
{{- end }}

{{/* kubelet waits this long after deletion: preStop sleep + drain + graceful shutdown + margin */}}
{{- define "cxr.terminationGrace" -}}
{{- add (.Values.drain.preStopSleepSeconds | int) (.Values.drain.seconds | int) (.Values.gracefulShutdownSeconds | int) 5 }}
{{- end }}
