{{/* The operator's image: [global.imageRegistry/]repository:tag, the tag defaulting to global.imageTag, then the app version. */}}
{{- define "flotilla-operator.image" -}}
{{- $registry := default "" ((.Values.global).imageRegistry) -}}
{{- $tag := default .Chart.AppVersion (default ((.Values.global).imageTag) .Values.image.tag) -}}
{{- if $registry -}}{{ printf "%s/%s:%s" $registry .Values.image.repository $tag }}{{- else -}}{{ printf "%s:%s" .Values.image.repository $tag }}{{- end -}}
{{- end -}}

{{/* The RBAC objects' name: unique per release, and per namespace (ClusterRoles are
     cluster-wide, and two namespaces may hold a release of the same name). */}}
{{- define "flotilla-operator.clusterName" -}}
{{- printf "%s-%s-%s" (include "flotilla.fullname" .) .Release.Namespace .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "flotilla-operator.labels" -}}
{{ include "flotilla.labels.standard" . }}
app.kubernetes.io/component: operator
{{- end -}}
