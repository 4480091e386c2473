{{/* The Service: port 80 named http. */}}
{{- define "flotilla.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "flotilla.fullname" . }}
  labels:
    {{- include "flotilla.labels.standard" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "flotilla.labels.matchLabels" . | nindent 4 }}
  ports:
    - {name: http, port: 80, targetPort: http, protocol: TCP}
{{- end -}}
