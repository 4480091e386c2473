{{/* The container security context of the restricted Pod Security Standard. */}}
{{- define "flotilla.securityContext.container" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The service's environment: its own values, templated so the umbrella can name secrets. */}}
{{- define "flotilla.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PORT
  value: {{ .Values.containerPort | quote }}
{{- with .Values.env }}
{{ tpl (toYaml .) $ }}
{{- end }}
{{- end -}}

{{/* A writable /tmp, and each secretMounts entry read-only (the same shape the operator renders). */}}
{{- define "flotilla.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- range $index, $mount := .Values.secretMounts }}
- {name: secret-{{ $index }}, mountPath: {{ $mount.mountPath }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* The Deployment of a Flotilla service. */}}
{{- define "flotilla.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "flotilla.fullname" . }}
  labels:
    {{- include "flotilla.labels.standard" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "flotilla.labels.matchLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  template:
    metadata:
      labels:
        {{- include "flotilla.labels.standard" . | nindent 8 }}
      annotations:
        {{- with .Values.podAnnotations }}
        {{- tpl (toYaml .) $ | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      # No Docker-link variables (USERS_PORT=tcp://...): configuration comes from env only.
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      terminationGracePeriodSeconds: 30
      topologySpreadConstraints:
        {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - maxSkew: 1
          topologyKey: {{ . }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "flotilla.labels.matchLabels" $ | nindent 14 }}
        {{- end }}
      {{- if .Values.migrations.enabled }}
      initContainers:
        - name: migrate
          image: {{ include "flotilla.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          args: [migrate]
          env:
            {{- include "flotilla.env" . | nindent 12 }}
          {{- with .Values.envFrom }}
          envFrom:
            {{- tpl (toYaml .) $ | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- include "flotilla.securityContext.container" . | nindent 12 }}
          volumeMounts:
            {{- include "flotilla.volumeMounts" . | nindent 12 }}
      {{- end }}
      containers:
        - name: {{ include "flotilla.name" . }}
          image: {{ include "flotilla.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - {name: http, containerPort: {{ .Values.containerPort }}, protocol: TCP}
          env:
            {{- include "flotilla.env" . | nindent 12 }}
          {{- with .Values.envFrom }}
          envFrom:
            {{- tpl (toYaml .) $ | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          startupProbe:
            httpGet: {path: {{ .Values.probes.liveness }}, port: http}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: {{ .Values.probes.liveness }}, port: http}
            periodSeconds: 10
            timeoutSeconds: 2
          readinessProbe:
            httpGet: {path: {{ .Values.probes.readiness }}, port: http}
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          lifecycle:
            preStop:
              sleep: {seconds: 5}
          securityContext:
            {{- include "flotilla.securityContext.container" . | nindent 12 }}
          volumeMounts:
            {{- include "flotilla.volumeMounts" . | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 256Mi}
        {{- range $index, $mount := .Values.secretMounts }}
        - name: secret-{{ $index }}
          secret: {secretName: {{ tpl $mount.secretName $ }}, defaultMode: 0440}
        {{- end }}
{{- end -}}
