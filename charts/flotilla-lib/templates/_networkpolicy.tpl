{{/* Ingress to a service: only from the pods named in networkPolicy.from, and Prometheus. */}}
{{- define "flotilla.networkPolicy" -}}
{{- if .Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "flotilla.fullname" . }}
  labels:
    {{- include "flotilla.labels.standard" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "flotilla.labels.matchLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports:
        - {port: http, protocol: TCP}
      # An empty "from" would admit everyone: the release's helm test pod is always listed.
      from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/component: test
              app.kubernetes.io/instance: {{ .Release.Name }}
        {{- range .Values.networkPolicy.from }}
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: {{ . }}
        {{- end }}
        {{- with .Values.networkPolicy.extraFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}
{{- end -}}

{{/* Everything a service chart renders (nothing in operator mode, where the operator makes
     them from Microservice resources): a service chart's templates/service.yaml includes this. */}}
{{- define "flotilla.service.all" -}}
{{- if ne ((.Values.global).mode | default "workloads") "operator" }}
{{ include "flotilla.deployment" . }}
---
{{ include "flotilla.service" . }}
{{- range $template := list "flotilla.ingress" "flotilla.serviceMonitor" "flotilla.hpa" "flotilla.pdb" "flotilla.networkPolicy" }}
{{- $rendered := include $template $ }}
{{- if trim $rendered }}
---
{{ $rendered }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
