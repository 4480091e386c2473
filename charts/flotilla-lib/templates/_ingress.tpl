{{/* An Ingress of the service's own, when ingress.enabled (the umbrella routes the public paths
     with one Ingress of its own instead). */}}
{{- define "flotilla.ingress" -}}
{{- if .Values.ingress.enabled }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "flotilla.fullname" . }}
  labels:
    {{- include "flotilla.labels.standard" . | nindent 4 }}
  {{- with .Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .Values.ingress.tlsSecretName }}
  tls:
    - hosts: [{{ required "ingress.host is required with ingress.tlsSecretName" $.Values.ingress.host | quote }}]
      secretName: {{ . }}
  {{- end }}
  rules:
    - {{- with .Values.ingress.host }}
      host: {{ . | quote }}
      {{- end }}
      http:
        paths:
          {{- range .Values.ingress.paths }}
          - path: {{ . }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "flotilla.fullname" $ }}
                port: {name: http}
          {{- end }}
{{- end }}
{{- end -}}
