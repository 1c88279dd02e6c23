{{/* Chart name, at most 63 characters. */}}
{{- define "aws-auth-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name already contains it.
A release called `aws-auth-operator` gives exactly the names of deploy/rbac.yaml.
*/}}
{{- define "aws-auth-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aws-auth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aws-auth-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aws-auth-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aws-auth-operator.labels" -}}
helm.sh/chart: {{ include "aws-auth-operator.chart" . }}
{{ include "aws-auth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aws-auth-operator
{{- end }}

{{- define "aws-auth-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aws-auth-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace of the leader-election Lease (and of the Role that allows it). */}}
{{- define "aws-auth-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{- define "aws-auth-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* host:port for --metrics-addr; an IPv6 address goes in brackets. */}}
{{- define "aws-auth-operator.metricsAddr" -}}
{{- $host := .Values.metrics.bindAddress }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int .Values.metrics.port) }}
{{- else }}
{{- printf "%s:%d" $host (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{/*
The operator's arguments, one flag per value. Keep in step with `aws-auth-operator run --help`:
tests/chart/test_chart.py fails for a flag of the binary that no value reaches.
*/}}
{{- define "aws-auth-operator.args" -}}
- "run"
- {{ printf "--log-format=%s" .Values.operator.logFormat | quote }}
- {{ printf "--drift=%s" .Values.operator.drift | quote }}
- {{ printf "--recover-malformed=%t" .Values.operator.recoverMalformed | quote }}
{{- range .Values.operator.protectedArns }}
- {{ printf "--protected-arn=%s" . | quote }}
{{- end }}
{{- range .Values.operator.allowedGroups }}
- {{ printf "--allowed-groups=%s" . | quote }}
{{- end }}
{{- range .Values.operator.deniedGroups }}
- {{ printf "--denied-groups=%s" . | quote }}
{{- end }}
{{- range .Values.operator.allowedUsernames }}
- {{ printf "--allowed-usernames=%s" . | quote }}
{{- end }}
{{- range .Values.operator.deniedUsernames }}
- {{ printf "--denied-usernames=%s" . | quote }}
{{- end }}
{{- range .Values.operator.allowedReservedUsernames }}
- {{ printf "--allowed-reserved-usernames=%s" . | quote }}
{{- end }}
{{- if .Values.operator.enforceGroupPolicy }}
- "--enforce-group-policy"
{{- end }}
- {{ printf "--history-limit=%d" (int .Values.operator.historyLimit) | quote }}
- {{ printf "--resync-seconds=%d" (int .Values.operator.resyncSeconds) | quote }}
- {{ printf "--status-concurrency=%d" (int .Values.operator.statusConcurrency) | quote }}
- {{ printf "--kube-qps=%d" (int .Values.operator.kubeQps) | quote }}
{{- if .Values.leaderElection.enabled }}
- "--leader-election"
{{- end }}
- {{ printf "--lease-namespace=%s" (include "aws-auth-operator.leaseNamespace" .) | quote }}
- {{ printf "--metrics-addr=%s" (include "aws-auth-operator.metricsAddr" .) | quote }}
- {{ printf "--access-entries=%s" .Values.accessEntries.mode | quote }}
{{- if ne .Values.accessEntries.mode "off" }}
- {{ printf "--cluster-name=%s" (required "accessEntries.clusterName is required when accessEntries.mode is not off" .Values.accessEntries.clusterName) | quote }}
{{- else if .Values.accessEntries.clusterName }}
- {{ printf "--cluster-name=%s" .Values.accessEntries.clusterName | quote }}
{{- end }}
{{- /* Also with accessEntries.mode off: IAM requests (principals) are signed for the region. */}}
{{- with .Values.accessEntries.region }}
- {{ printf "--region=%s" . | quote }}
{{- end }}
{{- with .Values.accessEntries.endpoint }}
- {{ printf "--eks-endpoint=%s" . | quote }}
{{- end }}
- {{ printf "--access-entries-concurrency=%d" (int .Values.accessEntries.concurrency) | quote }}
- {{ printf "--access-entries-resync-seconds=%d" (int .Values.accessEntries.resyncSeconds) | quote }}
{{- if .Values.principals.verify }}
- "--verify-principals"
{{- end }}
- {{ printf "--principal-cache-seconds=%d" (int .Values.principals.cacheSeconds) | quote }}
- {{ printf "--iam-concurrency=%d" (int .Values.principals.concurrency) | quote }}
- {{ printf "--principals-resync-seconds=%d" (int .Values.principals.resyncSeconds) | quote }}
{{- with .Values.principals.iamEndpoint }}
- {{ printf "--iam-endpoint=%s" . | quote }}
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
