{{/* Labels every object of a chart carries. */}}
{{- define "flotilla.labels.standard" -}}
helm.sh/chart: {{ include "flotilla.chart" . }}
{{ include "flotilla.labels.matchLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion ((.Values.image).tag) | quote }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The immutable selector labels. */}}
{{- define "flotilla.labels.matchLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
