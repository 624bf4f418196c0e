{{/* <registry>/<name>:<tag>, or the name itself when it holds a "/" (Dapr's rule). */}}
{{- define "pysentry.image" -}}
{{- $name := index . 0 -}}{{- $global := index . 1 -}}
{{- if contains "/" $name -}}{{ $name }}{{- else -}}{{ $global.registry }}/{{ $name }}:{{ $global.tag }}{{- end -}}
{{- end -}}

{{/* Replicas: global.ha.replicaCount in HA mode, else the component's replicaCount. */}}
{{- define "pysentry.replicas" -}}
{{- $component := index . 0 -}}{{- $global := index . 1 -}}
{{- if $global.ha.enabled -}}{{ $global.ha.replicaCount }}{{- else -}}{{ $component.replicaCount }}{{- end -}}
{{- end -}}

{{- define "pysentry.sentryAddress" -}}
{{- if .Values.global.mtls.sentryAddress -}}{{ .Values.global.mtls.sentryAddress }}{{- else -}}dapr-sentry.{{ .Release.Namespace }}.svc.cluster.local:443{{- end -}}
{{- end -}}

{{- define "pysentry.labels" -}}
app.kubernetes.io/part-of: dapr
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
