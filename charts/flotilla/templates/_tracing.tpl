{{/* Jaeger's objects (tracing.enabled): <release>-jaeger. */}}
{{- define "flotilla.jaeger.name" -}}
{{- printf "%s-jaeger" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod labels of Jaeger, as YAML. */}}
{{- define "flotilla.jaeger.selector" -}}
{{- toYaml (dict "app.kubernetes.io/name" "jaeger" "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/component" "tracing") -}}
{{- end -}}

{{/* Jaeger v2's configuration: OTLP in, memory storage (bounded), the query API and UI under
     tracing.ingress.path, healthcheckv2 for the probes. */}}
{{- define "flotilla.jaeger.config" -}}
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource: {service.name: jaeger}
    metrics: {level: none}
    logs: {level: info, encoding: json}
extensions:
  healthcheckv2:
    use_v2: true
    http: {endpoint: "0.0.0.0:13133"}
  jaeger_query:
    base_path: {{ .Values.tracing.ingress.path | quote }}
    storage: {traces: memstore}
    http: {endpoint: "0.0.0.0:16686"}
    grpc: {endpoint: "0.0.0.0:16685"}
  jaeger_storage:
    backends:
      memstore:
        memory: {max_traces: {{ int .Values.tracing.jaeger.maxTraces }}}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "0.0.0.0:4317"}
      http: {endpoint: "0.0.0.0:4318"}
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
{{- end -}}

{{/* Where the services send their spans: Jaeger's OTLP/HTTP port, by its Service's DNS name. */}}
{{- define "flotilla.jaeger.otlpEndpoint" -}}
{{- printf "http://%s.%s.svc.cluster.local:4318" (include "flotilla.jaeger.name" .) .Release.Namespace -}}
{{- end -}}
