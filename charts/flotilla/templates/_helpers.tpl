{{/* Name of the Secret holding every generated credential. */}}
{{- define "flotilla.secretName" -}}{{ .Release.Name }}-flotilla{{- end -}}

{{/* Name of the Secret holding the JWT signing keys. */}}
{{- define "flotilla.jwtSecretName" -}}{{ .Release.Name }}-jwt-keys{{- end -}}

{{/* The PostgreSQL host of the bundled database. */}}
{{- define "flotilla.postgresql.host" -}}{{ .Release.Name }}-postgresql{{- end -}}

{{/* A value kept from the live Secret (so upgrades keep it), else generated once. */}}
{{- define "flotilla.keep" -}}
{{- $existing := index . 0 -}}{{- $key := index . 1 -}}{{- $generated := index . 2 -}}
{{- if and $existing (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- $generated | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The image of one service, from the umbrella's view: (list $ "users"). */}}
{{- define "flotilla.serviceImage" -}}
{{- $root := index . 0 -}}{{- $values := index $root.Values (index . 1) -}}
{{- $tag := default $root.Chart.AppVersion (default $root.Values.global.imageTag $values.image.tag) -}}
{{- $registry := $root.Values.global.imageRegistry -}}
{{- if $registry -}}{{ printf "%s/%s:%s" $registry $values.image.repository $tag }}{{- else -}}{{ printf "%s:%s" $values.image.repository $tag }}{{- end -}}
{{- end -}}
