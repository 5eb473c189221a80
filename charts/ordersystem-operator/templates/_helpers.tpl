{{/* Full name of the release's objects: the release name, suffixed with the chart name unless it has it. */}}
{{- define "ordersystem-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ordersystem-operator.serviceAccountName" -}}
{{- default (include "ordersystem-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "ordersystem-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ordersystem
{{- end -}}

{{- define "ordersystem-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
