{{/* Release-wide name: <release>-grodt, or the release name when it already says grodt. */}}
{{- define "grodt.fullname" -}}
{{- if contains "grodt" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-grodt" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "grodt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: grodt
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "name" $name). */}}
{{- define "grodt.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "grodt.serviceName" -}}
{{- printf "%s-%s" (include "grodt.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "grodt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "grodt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "grodt.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* Environment from Secrets: the database URL always, the Redis URL when it is secret. */}}
{{- define "grodt.secretEnv" -}}
- name: GRODT_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: the database URL comes only from a Secret" .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- if .Values.redis.existingSecret }}
- name: GRODT_REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- end }}
{{- end -}}

{{/* OTLP endpoint: the configured collector, else the chart's own Jaeger when enabled. */}}
{{- define "grodt.otlpEndpoint" -}}
{{- if .Values.telemetry.otlpEndpoint -}}
{{- .Values.telemetry.otlpEndpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://%s-jaeger:4317" (include "grodt.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The backtest jobs stream and consumer group of the workers. Not values: they
are constants of the code (libs/proto/src/topic.rs Topic::BacktestJob and
services/backtest-worker/src/worker.rs GROUP; scripts/check-deploy compares).
*/}}
{{- define "grodt.backtestJobsStream" -}}grodt.backtest-jobs.v1{{- end -}}
{{- define "grodt.backtestWorkerGroup" -}}backtest-worker{{- end -}}

{{/*
The Redis key of the jobs stream, built as libs/bus RedisBus::key builds it:
the key prefix (GRODT_REDIS__KEY_PREFIX, from redis.keyPrefix) then the stream
name, with nothing in between ("prod:" + "grodt.backtest-jobs.v1").
*/}}
{{- define "grodt.backtestJobsKey" -}}
{{- printf "%s%s" .Values.redis.keyPrefix (include "grodt.backtestJobsStream" .) -}}
{{- end -}}

{{/* Name of the KEDA TriggerAuthentication that reads redis.existingSecret. */}}
{{- define "grodt.redisTriggerAuthName" -}}
{{- printf "%s-redis-keda" (include "grodt.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The services that are single writers over a journal: one pod, Recreate. */}}
{{- define "grodt.singleWriters" -}}strategy risk execution{{- end -}}

{{/* The catalog PVC every catalog pod mounts: catalog.claimName, else the chart's own. */}}
{{- define "grodt.catalogClaim" -}}
{{- if .Values.catalog.claimName -}}
{{- .Values.catalog.claimName -}}
{{- else if .Values.catalog.create -}}
{{- printf "%s-catalog" (include "grodt.fullname" .) -}}
{{- else -}}
{{- fail "catalog.claimName or catalog.create is required: the catalog must be one volume every pod shares" -}}
{{- end -}}
{{- end -}}
