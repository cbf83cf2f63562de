{{/* Names, labels, object metadata and the image reference. */}}

{{- define "llama-ascend.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped prefix of every object name, at most 63 characters. */}}
{{- define "llama-ascend.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llama-ascend.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llama-ascend.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The label that lets a pod through the NetworkPolicy to the API port. */}}
{{- define "llama-ascend.clientLabel" -}}
{{- printf "%s-client" (include "llama-ascend.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llama-ascend.claimName" -}}
{{- default (printf "%s-models" (include "llama-ascend.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{- define "llama-ascend.secretName" -}}
{{- printf "%s-secrets" (include "llama-ascend.fullname" .) -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------------------------- */}}

{{/* The model server pods (`component: server`) and, with router.enabled, the router pods (`component: router`). */}}
{{- define "llama-ascend.selectorLabels" -}}
{{- include "llama-ascend.componentSelector" (dict "context" . "component" "server") -}}
{{- end -}}

{{- define "llama-ascend.routerSelectorLabels" -}}
{{- include "llama-ascend.componentSelector" (dict "context" . "component" "router") -}}
{{- end -}}

{{- define "llama-ascend.componentSelector" -}}
app.kubernetes.io/name: {{ include "llama-ascend.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llama-ascend.labels" -}}
{{- include "llama-ascend.componentLabels" (dict "context" . "component" "server") -}}
{{- end -}}

{{- define "llama-ascend.routerLabels" -}}
{{- include "llama-ascend.componentLabels" (dict "context" . "component" "router") -}}
{{- end -}}

{{- define "llama-ascend.componentLabels" -}}
{{- $ctx := .context -}}
helm.sh/chart: {{ include "llama-ascend.chart" $ctx }}
{{ include "llama-ascend.componentSelector" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: llama-ascend
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata of every object: name, namespace, the common labels (+ .labels) and commonAnnotations (+ .annotations);
"component" "router" gives the router's labels instead of the server's.
Call: metadata: {{ include "llama-ascend.metadata" (dict "context" . "name" $name "annotations" $extra) | nindent 2 }}
*/}}
{{- define "llama-ascend.metadata" -}}
{{- $ctx := .context -}}
name: {{ .name }}
namespace: {{ $ctx.Release.Namespace }}
labels:
  {{- if .selfLabels }}
  {{- toYaml .selfLabels | nindent 2 }}
  {{- else }}
  {{- include "llama-ascend.componentLabels" (dict "context" $ctx "component" (default "server" .component)) | nindent 2 }}
  {{- end }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := merge (deepCopy (default (dict) .annotations)) (default (dict) $ctx.Values.commonAnnotations) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Image ----------------------------------------------------------------------------------------------------- */}}

{{- define "llama-ascend.image" -}}
{{- $image := .Values.image -}}
{{- $repository := $image.repository -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" $image.registry $image.repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}
