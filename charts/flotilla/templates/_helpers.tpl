{{/* The Secret holding the credentials: the user's (secrets.existingSecret) or the generated one. */}}
{{- define "flotilla.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-flotilla" .Release.Name) -}}
{{- end -}}

{{/* The Secret holding the JWT signing keys. */}}
{{- define "flotilla.jwtSecretName" -}}
{{- .Values.secrets.existingJwtKeysSecret | default (printf "%s-jwt-keys" .Release.Name) -}}
{{- end -}}

{{/* The Secret of the services' HTTPS certificate (tls.enabled): the user's or the generated one. */}}
{{- define "flotilla.tlsSecretName" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" .Release.Name) -}}
{{- end -}}

{{/* The DNS names a service's certificate must carry: (list $ $services), one per line. */}}
{{- define "flotilla.tlsNames" -}}
{{- $root := index . 0 -}}
{{- range $name, $_ := index . 1 }}
{{ $name }}.{{ $root.Release.Namespace }}.svc
{{ $name }}.{{ $root.Release.Namespace }}.svc.cluster.local
{{- end -}}
{{- end -}}

{{/* The bundled PostgreSQL of one service: (list $ "users"). */}}
{{- define "flotilla.postgresql.name" -}}
{{- $name := printf "%s-%s-postgresql" (index . 0).Release.Name (index . 1) -}}
{{- if gt (len $name) 52 -}}
{{- fail (printf "%s: a StatefulSet name has at most 52 characters: shorten the release or service name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The enabled entries of services:, each over serviceDefaults, as YAML (fromYaml it). */}}
{{- define "flotilla.services" -}}
{{- $services := dict -}}
{{- range $name, $entry := .Values.services -}}
{{- $entry = $entry | default dict -}}
{{- if not (eq (toString $entry.enabled) "false") -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$" $name) -}}
{{- fail (printf "services.%s: a service name is lower-case letters, digits and '-', starts with a letter and has at most 40 characters" $name) -}}
{{- end -}}
{{- /* Key by key: an entry's key replaces the default's whole, so an entry's
       disruptionBudget {maxUnavailable: 1} or its resources never mix with the defaults'. */ -}}
{{- $merged := deepCopy ($.Values.serviceDefaults | default dict) -}}
{{- range $key, $value := $entry -}}{{- $_ := set $merged $key (deepCopy $value) -}}{{- end -}}
{{- $_ := set $services $name $merged -}}
{{- end -}}
{{- end -}}
{{- toYaml $services -}}
{{- end -}}

{{/* The token issuer's identifier: (list $ $services). global.issuerUrl, else the ingress host's
     https origin, else the in-cluster URL of the service with tokenIssuer: true (none: empty). */}}
{{- define "flotilla.issuerUrl" -}}
{{- $root := index . 0 -}}{{- $services := index . 1 -}}
{{- if $root.Values.global.issuerUrl -}}
{{- $root.Values.global.issuerUrl -}}
{{- else if and $root.Values.ingress.enabled $root.Values.ingress.host -}}
{{- printf "https://%s" $root.Values.ingress.host -}}
{{- else -}}
{{- $issuer := "" -}}
{{- range $name, $entry := $services -}}{{- if $entry.tokenIssuer -}}{{- $issuer = $name -}}{{- end -}}{{- end -}}
{{- with $issuer -}}{{- printf "https://%s.%s.svc.cluster.local" . $root.Release.Namespace -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod labels of one service's bundled PostgreSQL: (list $ "users"), as YAML. */}}
{{- define "flotilla.postgresql.selector" -}}
{{- $root := index . 0 -}}
{{- toYaml (dict "app.kubernetes.io/name" "postgresql" "app.kubernetes.io/instance" $root.Release.Name "app.kubernetes.io/component" (printf "%s-database" (index . 1))) -}}
{{- end -}}

{{/* A name as an environment variable prefix: orders -> ORDERS, my-svc -> MY_SVC. */}}
{{- define "flotilla.envPrefix" -}}
{{- . | upper | replace "-" "_" -}}
{{- end -}}

{{/* The Microservice spec of one service: (list $ name entry $services), as YAML. The
     chart-only keys become env, mounts and defaults; everything else is the entry's own. */}}
{{- define "flotilla.microserviceSpec" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}{{- $entry := index . 2 -}}{{- $services := index . 3 -}}
{{- $spec := omit $entry "enabled" "database" "oauthClient" "tokenIssuer" -}}
{{- $tag := $root.Values.global.imageTag | default $root.Chart.AppVersion -}}
{{- $registry := $root.Values.global.imageRegistry | trimSuffix "/" -}}
{{- $_ := set $spec "image" ($entry.image | default (printf "%sflotilla/%s:%s" (ternary (printf "%s/" $registry) "" (ne $registry "")) $name $tag)) -}}
{{- /* Injected env first; an entry's own env entry of the same name replaces the injected one. */ -}}
{{- $injected := list -}}
{{- with $root.Values.global.trustedProxies -}}
{{- $injected = append $injected (dict "name" "TRUSTED_PROXIES" "value" .) -}}
{{- end -}}
{{- with include "flotilla.issuerUrl" (list $root $services) -}}
{{- $injected = append $injected (dict "name" "JWT_ISSUER" "value" .) -}}
{{- end -}}
{{- /* Traces to the release's Jaeger (tracing.enabled), in OpenTelemetry's own variables. */ -}}
{{- if $root.Values.tracing.enabled -}}
{{- $injected = append $injected (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" (include "flotilla.jaeger.otlpEndpoint" $root)) -}}
{{- $injected = append $injected (dict "name" "OTEL_EXPORTER_OTLP_PROTOCOL" "value" "http/protobuf") -}}
{{- $injected = append $injected (dict "name" "OTEL_TRACES_SAMPLER" "value" "parentbased_traceidratio") -}}
{{- $injected = append $injected (dict "name" "OTEL_TRACES_SAMPLER_ARG" "value" (toString $root.Values.tracing.sampleRatio)) -}}
{{- end -}}
{{- /* Secrets as files in one mount, each only in the container that uses it (the kit reads
       $FLOTILLA_SECRETS_DIR/<VARIABLE>): the migration registers clients and the admin, the
       service signs and calls with its client secret. */ -}}
{{- $files := list -}}
{{- $mounts := $spec.secretMounts | default list -}}
{{- if $entry.database -}}
{{- $files = append $files (dict "key" (printf "%s-database-url" $name) "path" "DATABASE_URL") -}}
{{- end -}}
{{- if $entry.tokenIssuer -}}
{{- $clients := list -}}
{{- range $client, $other := $services -}}
{{- if $other.oauthClient -}}{{- $clients = append $clients $client -}}{{- end -}}
{{- end -}}
{{- $injected = append $injected (dict "name" "JWT_KEYS_DIR" "value" "/etc/flotilla/jwt-keys") -}}
{{- $injected = append $injected (dict "name" "OAUTH_CLIENTS" "value" (join "," $clients)) -}}
{{- range $client := $clients -}}
{{- $prefix := printf "OAUTH_CLIENT_%s" (include "flotilla.envPrefix" $client) -}}
{{- $files = append $files (dict "key" (printf "%s-client-secret" $client) "path" (printf "%s_SECRET" $prefix) "usedBy" (list "migration")) -}}
{{- $injected = append $injected (dict "name" (printf "%s_SCOPES" $prefix) "value" (required (printf "services.%s.oauthClient.scopes is required" $client) (index $services $client).oauthClient.scopes)) -}}
{{- end -}}
{{- $injected = append $injected (dict "name" "ADMIN_EMAIL" "value" $root.Values.global.adminEmail) -}}
{{- $files = append $files (dict "key" "admin-password" "path" "ADMIN_PASSWORD" "usedBy" (list "migration")) -}}
{{- $mounts = prepend $mounts (dict "secretName" (include "flotilla.jwtSecretName" $root) "mountPath" "/etc/flotilla/jwt-keys" "usedBy" (list "service")) -}}
{{- end -}}
{{- if $entry.oauthClient -}}
{{- $files = append $files (dict "key" (printf "%s-client-secret" $name) "path" (printf "%s_CLIENT_SECRET" (include "flotilla.envPrefix" $name)) "usedBy" (list "service")) -}}
{{- end -}}
{{- if $files -}}
{{- $mounts = prepend $mounts (dict "secretName" (include "flotilla.secretName" $root) "mountPath" "/etc/flotilla/secrets" "items" $files) -}}
{{- $injected = append $injected (dict "name" "FLOTILLA_SECRETS_DIR" "value" "/etc/flotilla/secrets") -}}
{{- end -}}
{{- if $mounts -}}{{- $_ := set $spec "secretMounts" $mounts -}}{{- end -}}
{{- $own := $spec.env | default list -}}
{{- $ownNames := list -}}
{{- range $own -}}{{- $ownNames = append $ownNames .name -}}{{- end -}}
{{- $env := list -}}
{{- range $injected -}}{{- if not (has .name $ownNames) -}}{{- $env = append $env . -}}{{- end -}}{{- end -}}
{{- $env = concat $env $own -}}
{{- if $env -}}{{- $_ := set $spec "env" $env -}}{{- end -}}
{{- if and $root.Values.tls.enabled (not $spec.tls) -}}
{{- $_ := set $spec "tls" (dict "secretName" (include "flotilla.tlsSecretName" $root)) -}}
{{- end -}}
{{- /* The release's ingress settings under every routed service's own. */ -}}
{{- if and $spec.ingress $root.Values.ingress.enabled -}}
{{- $ingress := dict -}}
{{- with $root.Values.ingress.host -}}{{- $_ := set $ingress "host" . -}}{{- end -}}
{{- with $root.Values.ingress.className -}}{{- $_ := set $ingress "className" . -}}{{- end -}}
{{- if $root.Values.ingress.tls.enabled -}}
{{- $tls := dict "secretName" $root.Values.ingress.tls.secretName -}}
{{- with $root.Values.ingress.tls.clusterIssuer -}}{{- $_ := set $tls "clusterIssuer" . -}}{{- end -}}
{{- $_ := set $ingress "tls" $tls -}}
{{- end -}}
{{- $_ := set $spec "ingress" (mergeOverwrite $ingress $spec.ingress) -}}
{{- if and $spec.ingress.tls (not $spec.ingress.host) -}}
{{- fail (printf "services.%s: ingress TLS needs a host: set ingress.host" $name) -}}
{{- end -}}
{{- else -}}
{{- $spec = omit $spec "ingress" -}}
{{- end -}}
{{- /* Metrics: the release's ServiceMonitor labels under the entry's own. */ -}}
{{- $metrics := $spec.metrics | default dict -}}
{{- $labels := merge ($metrics.labels | default dict) ($root.Values.global.serviceMonitor.labels | default dict) -}}
{{- if $labels -}}{{- $_ := set $metrics "labels" $labels -}}{{- end -}}
{{- if $metrics -}}{{- $_ := set $spec "metrics" $metrics -}}{{- end -}}
{{- /* NetworkPolicy: the operator derives the peers; the chart adds its helm test pod. */ -}}
{{- if $root.Values.networkPolicy.enabled -}}
{{- $policy := $spec.networkPolicy | default dict -}}
{{- $testPod := dict "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/component" "test" "app.kubernetes.io/instance" $root.Release.Name)) -}}
{{- $_ := set $policy "from" (prepend ($policy.from | default list) $testPod) -}}
{{- /* Egress: its own database, the release's extra peers and its Jaeger, beside what the operator derives. */ -}}
{{- $to := concat ($policy.to | default list) ($root.Values.networkPolicy.to | default list) -}}
{{- if and $entry.database $root.Values.postgresql.enabled -}}
{{- $to = prepend $to (dict "podSelector" (dict "matchLabels" (include "flotilla.postgresql.selector" (list $root $name) | fromYaml))) -}}
{{- end -}}
{{- /* The release's Jaeger: a peer of to admits every port, and Jaeger's own policy admits the services on its OTLP ports only. */ -}}
{{- if $root.Values.tracing.enabled -}}
{{- $to = append $to (dict "podSelector" (dict "matchLabels" (include "flotilla.jaeger.selector" $root | fromYaml))) -}}
{{- end -}}
{{- if $to -}}{{- $_ := set $policy "to" $to -}}{{- end -}}
{{- $_ := set $spec "networkPolicy" (merge $policy (dict "enabled" true)) -}}
{{- else -}}
{{- $_ := set $spec "networkPolicy" (dict "enabled" false) -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* A value kept from the live Secret (so upgrades keep it), else generated once: (list $existing key generated). */}}
{{- define "flotilla.keep" -}}
{{- $existing := index . 0 -}}{{- $key := index . 1 -}}{{- $generated := index . 2 -}}
{{- if and $existing (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- $generated | b64enc -}}
{{- end -}}
{{- end -}}
