{{/* Names ---------------------------------------------------------------------------------------------------- */}}

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

{{- define "llama-ascend.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llama-ascend.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "llama-ascend.labels" -}}
helm.sh/chart: {{ include "llama-ascend.chart" . }}
{{ include "llama-ascend.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llama-ascend
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata of every object: name, namespace, the common labels (+ .labels) and commonAnnotations (+ .annotations).
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
  {{- include "llama-ascend.labels" $ctx | nindent 2 }}
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

{{/* Values derived from the entrypoint config ----------------------------------------------------------------- */}}

{{- define "llama-ascend.backend" -}}
{{- dig "backend" "ascend" .Values.config -}}
{{- end -}}

{{- define "llama-ascend.tensorParallel" -}}
{{- dig "server" "tensor_parallel_size" 1 .Values.config | int -}}
{{- end -}}

{{/* NPUs per pod: tensor_parallel_size on the ascend backend, none on cpu. */}}
{{- define "llama-ascend.npuCount" -}}
{{- if eq (include "llama-ascend.backend" .) "ascend" -}}
{{- include "llama-ascend.tensorParallel" . -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{- define "llama-ascend.port" -}}
{{- dig "server" "port" 8000 .Values.config | int -}}
{{- end -}}

{{- define "llama-ascend.shutdownTimeout" -}}
{{- dig "server" "shutdown_timeout" 30 .Values.config | int -}}
{{- end -}}

{{- define "llama-ascend.servedName" -}}
{{- dig "model" "served_name" "Llama-3.1-8B-Instruct" .Values.config -}}
{{- end -}}

{{- define "llama-ascend.apiKeyEnv" -}}
{{- dig "server" "api_key_env" "" .Values.config | default "" -}}
{{- end -}}

{{- define "llama-ascend.tokenEnv" -}}
{{- dig "model" "token_env" "HF_TOKEN" .Values.config | default "HF_TOKEN" -}}
{{- end -}}

{{/* Seconds the startup probe allows: loading, plus graph capture when the ascend backend compiles. */}}
{{- define "llama-ascend.startupBudget" -}}
{{- $budget := int .Values.startupProbe.loadBudgetSeconds -}}
{{- if and (eq (include "llama-ascend.backend" .) "ascend") (not (dig "server" "enforce_eager" false .Values.config)) -}}
{{- $budget = add $budget (int .Values.startupProbe.graphCaptureBudgetSeconds) -}}
{{- end -}}
{{- $budget -}}
{{- end -}}

{{- define "llama-ascend.startupFailureThreshold" -}}
{{- $period := int .Values.startupProbe.periodSeconds -}}
{{- div (add (int (include "llama-ascend.startupBudget" .)) (sub $period 1)) $period -}}
{{- end -}}

{{/* preStop sleep + vLLM's drain + a margin for the process to exit. */}}
{{- define "llama-ascend.terminationGracePeriod" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (int .Values.preStopSleepSeconds) (int (include "llama-ascend.shutdownTimeout" .)) 15 -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* `$LLAMA_ASCEND_CACHE` in the pods: on the weights volume, so local-source compile caches survive restarts. */}}
{{- define "llama-ascend.cacheRoot" -}}
{{- printf "%s/.llama-ascend" (trimSuffix "/" .Values.persistence.mountPath) -}}
{{- end -}}

{{/* A config path with $LLAMA_ASCEND_CACHE expanded as the pods will see it. */}}
{{- define "llama-ascend.expandPath" -}}
{{- $root := include "llama-ascend.cacheRoot" .context -}}
{{- .path | replace "${LLAMA_ASCEND_CACHE}" $root | replace "$LLAMA_ASCEND_CACHE" $root -}}
{{- end -}}

{{/* "true" when a path lies on the weights volume. */}}
{{- define "llama-ascend.onVolume" -}}
{{- $mount := trimSuffix "/" .context.Values.persistence.mountPath -}}
{{- $path := include "llama-ascend.expandPath" . | trimSuffix "/" -}}
{{- if or (eq $path $mount) (hasPrefix (printf "%s/" $mount) $path) -}}true{{- end -}}
{{- end -}}

{{- define "llama-ascend.hfTokenSecret" -}}
{{- if .Values.hfToken.existingSecret -}}
{{- .Values.hfToken.existingSecret -}}
{{- else if .Values.hfToken.value -}}
{{- include "llama-ascend.secretName" . -}}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret -}}
{{- .Values.apiKey.existingSecret -}}
{{- else if .Values.apiKey.value -}}
{{- include "llama-ascend.secretName" . -}}
{{- end -}}
{{- end -}}

{{/* Server resources with the NPU request derived from the config. */}}
{{- define "llama-ascend.resources" -}}
{{- $resources := deepCopy (default (dict) .Values.resources) -}}
{{- $npus := int (include "llama-ascend.npuCount" .) -}}
{{- if gt $npus 0 -}}
{{- $requests := default (dict) $resources.requests -}}
{{- $limits := default (dict) $resources.limits -}}
{{- $_ := set $requests .Values.npu.resourceName $npus -}}
{{- $_ := set $limits .Values.npu.resourceName $npus -}}
{{- $_ := set $resources "requests" $requests -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* Pieces shared by the init container, the server and the sidecars -------------------------------------------- */}}

{{- define "llama-ascend.containerSecurityContext" -}}
{{- if .Values.containerSecurityContext.enabled }}
securityContext:
  {{- toYaml (omit .Values.containerSecurityContext "enabled") | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment every llama-ascend container gets: a writable $HOME, the cache root and the config path. */}}
{{- define "llama-ascend.baseEnv" -}}
- name: HOME
  value: /tmp
- name: LLAMA_ASCEND_CACHE
  value: {{ include "llama-ascend.cacheRoot" . | quote }}
- name: LLAMA_ASCEND_CONFIG
  value: /etc/llama-ascend/config.yaml
{{- end -}}

{{- define "llama-ascend.hfTokenEnv" -}}
{{- with include "llama-ascend.hfTokenSecret" . }}
- name: {{ include "llama-ascend.tokenEnv" $ }}
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.hfToken.key }}
{{- end }}
{{- end -}}

{{- define "llama-ascend.apiKeyEnv.var" -}}
{{- with include "llama-ascend.apiKeySecret" . }}
- name: {{ include "llama-ascend.apiKeyEnv" $ }}
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.apiKey.key }}
{{- end }}
{{- end -}}

{{- define "llama-ascend.commonMounts" -}}
- name: config
  mountPath: /etc/llama-ascend
  readOnly: true
- name: models
  mountPath: {{ .Values.persistence.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Validation: every problem is collected and reported at once. ------------------------------------------------ */}}

{{- define "llama-ascend.validateValues" -}}
{{- $messages := list -}}
{{- $fullname := include "llama-ascend.fullname" . -}}
{{- $server := default (dict) .Values.config.server -}}
{{- $model := default (dict) .Values.config.model -}}
{{- $host := dig "host" "0.0.0.0" $server -}}
{{- if not (has $host (list "0.0.0.0" "::" "[::]")) -}}
{{- $messages = append $messages (printf "config.server.host=%s: the Service and the probes reach the pod IP, a server bound to %s is unreachable; set config.server.host=0.0.0.0" $host $host) -}}
{{- end -}}
{{- $modelPath := dig "path" "/models" $model -}}
{{- if not (include "llama-ascend.onVolume" (dict "context" . "path" $modelPath)) -}}
{{- $messages = append $messages (printf "config.model.path=%s is not on the weights volume (persistence.mountPath=%s): the root filesystem is read-only and not kept; put it under %s" $modelPath .Values.persistence.mountPath .Values.persistence.mountPath) -}}
{{- end -}}
{{- with dig "cache_dir" "" $server -}}
{{- if not (include "llama-ascend.onVolume" (dict "context" $ "path" .)) -}}
{{- $messages = append $messages (printf "config.server.cache_dir=%s is not on the weights volume (persistence.mountPath=%s): compile caches would be lost on restart; put it under %s or leave it null" . $.Values.persistence.mountPath $.Values.persistence.mountPath) -}}
{{- end -}}
{{- end -}}
{{- $autoscaled := or .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- $messages = append $messages "autoscaling.hpa.enabled and autoscaling.keda.enabled are both true: KEDA makes its own HPA and the two would fight; enable one" -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (not .Values.autoscaling.keda.serverAddress) -}}
{{- $messages = append $messages "autoscaling.keda.enabled needs autoscaling.keda.serverAddress, the Prometheus URL (e.g. http://prometheus-operated.monitoring.svc:9090)" -}}
{{- end -}}
{{- if and (eq .Values.workloadKind "Deployment") .Values.persistence.enabled (not .Values.persistence.existingClaim) (not (has "ReadWriteMany" .Values.persistence.accessModes)) (or $autoscaled (gt (int .Values.replicaCount) 1)) -}}
{{- $messages = append $messages (printf "persistence.accessModes=%s cannot be shared by several replicas of a Deployment (replicaCount=%d, autoscaling=%t): use [ReadWriteMany], workloadKind=StatefulSet (a volume per replica) or persistence.existingClaim of a ReadWriteMany claim" (toJson .Values.persistence.accessModes) (int .Values.replicaCount) $autoscaled) -}}
{{- end -}}
{{- if and (eq .Values.workloadKind "StatefulSet") (eq (toString .Values.updateStrategy.type) "Recreate") -}}
{{- $messages = append $messages "updateStrategy.type=Recreate is not a StatefulSet strategy: use RollingUpdate (one pod at a time, old pod first) or OnDelete" -}}
{{- end -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (int (include "llama-ascend.shutdownTimeout" .)) -}}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (lt (int .Values.terminationGracePeriodSeconds) (int $drain)) -}}
{{- $messages = append $messages (printf "terminationGracePeriodSeconds=%d is below preStopSleepSeconds + config.server.shutdown_timeout = %d: in-flight requests would be killed; raise it or leave it null to derive it" (int .Values.terminationGracePeriodSeconds) (int $drain)) -}}
{{- end -}}
{{- $apiKeyEnv := include "llama-ascend.apiKeyEnv" . -}}
{{- if and .Values.apiKey.value .Values.apiKey.existingSecret -}}
{{- $messages = append $messages "apiKey.value and apiKey.existingSecret are both set: give one" -}}
{{- end -}}
{{- if and .Values.hfToken.value .Values.hfToken.existingSecret -}}
{{- $messages = append $messages "hfToken.value and hfToken.existingSecret are both set: give one" -}}
{{- end -}}
{{- if and (include "llama-ascend.apiKeySecret" .) (not $apiKeyEnv) -}}
{{- $messages = append $messages "an API key is given (apiKey) but config.server.api_key_env is null, so the server would not require it: set config.server.api_key_env=VLLM_API_KEY" -}}
{{- end -}}
{{- if and $apiKeyEnv (not (include "llama-ascend.apiKeySecret" .)) -}}
{{- $messages = append $messages (printf "config.server.api_key_env=%s but no key is given: set apiKey.existingSecret (and apiKey.key) or apiKey.value" $apiKeyEnv) -}}
{{- end -}}
{{- $npus := int (include "llama-ascend.npuCount" .) -}}
{{- range $section := list "requests" "limits" -}}
{{- $listed := dig $section $.Values.npu.resourceName "" (default (dict) $.Values.resources) -}}
{{- if and (ne (toString $listed) "") (ne (int $listed) $npus) -}}
{{- $messages = append $messages (printf "resources.%s[%s]=%v disagrees with config.server.tensor_parallel_size (%d NPUs on backend %s): remove it, the chart derives it" $section $.Values.npu.resourceName $listed $npus (include "llama-ascend.backend" $)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ascend.driverMounts.enabled (ne (include "llama-ascend.backend" .) "ascend") -}}
{{- $messages = append $messages "ascend.driverMounts.enabled is for backend ascend; config.backend is cpu: disable it" -}}
{{- end -}}
{{- if $messages -}}
{{- printf "\n\nVALUES VALIDATION (%d problems):\n  - %s" (len $messages) (join "\n  - " $messages) | fail -}}
{{- end -}}
{{- end -}}
