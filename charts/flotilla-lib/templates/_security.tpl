{{/* The container securityContext of the restricted Pod Security Standard. */}}
{{- define "flotilla.securityContext.container" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
