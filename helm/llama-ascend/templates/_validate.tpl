{{/*
Validation of the values: one named template per rule, each printing its problems (one per line, nothing when the
values are fine). `llama-ascend.validateValues` runs them all and fails once, listing every problem.
*/}}
{{- define "llama-ascend.validateValues" -}}
{{- $rules := list "host" "modelPath" "cacheDir" "autoscalers" "kedaServer" "sharedClaim" "statefulSetStrategy"
  "gracePeriod" "apiKeyOnce" "hfTokenOnce" "apiKeyUnused" "apiKeyMissing" "npuResources" "driverMounts"
  "routerOrPool" "routerWorkers" "poolPicker" "keyedReadiness" -}}
{{- $messages := list -}}
{{- range $rule := $rules -}}
{{- range $line := splitList "\n" (include (printf "llama-ascend.validate.%s" $rule) $) -}}
{{- if trim $line -}}
{{- $messages = append $messages (trim $line) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $messages -}}
{{- printf "\n\nVALUES VALIDATION (%d problems):\n  - %s" (len $messages) (join "\n  - " $messages) | fail -}}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.host" -}}
{{- $host := (include "llama-ascend.config" . | fromJson).server.host -}}
{{- if not (has $host (list "0.0.0.0" "::" "[::]")) -}}
config.server.host={{ $host }}: the Service and the probes reach the pod IP, a server bound to {{ $host }} is unreachable; set config.server.host=0.0.0.0
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.modelPath" -}}
{{- $path := (include "llama-ascend.config" . | fromJson).model.path -}}
{{- $mount := .Values.persistence.mountPath -}}
{{- if not (include "llama-ascend.onVolume" (dict "context" . "path" $path)) -}}
config.model.path={{ $path }} is not on the weights volume (persistence.mountPath={{ $mount }}): the root filesystem is read-only and not kept; put it under {{ $mount }}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.cacheDir" -}}
{{- $mount := .Values.persistence.mountPath -}}
{{- with (include "llama-ascend.config" . | fromJson).server.cache_dir -}}
{{- if not (include "llama-ascend.onVolume" (dict "context" $ "path" .)) -}}
config.server.cache_dir={{ . }} is not on the weights volume (persistence.mountPath={{ $mount }}): compile caches would be lost on restart; put it under {{ $mount }} or leave it null
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.autoscalers" -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
autoscaling.hpa.enabled and autoscaling.keda.enabled are both true: KEDA makes its own HPA and the two would fight; enable one
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.kedaServer" -}}
{{- if and .Values.autoscaling.keda.enabled (not .Values.autoscaling.keda.serverAddress) -}}
autoscaling.keda.enabled needs autoscaling.keda.serverAddress, the Prometheus URL (e.g. http://prometheus-operated.monitoring.svc:9090)
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.sharedClaim" -}}
{{- $autoscaled := or .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- $several := or $autoscaled (gt (int .Values.replicaCount) 1) -}}
{{- $shareable := or .Values.persistence.existingClaim (has "ReadWriteMany" .Values.persistence.accessModes) -}}
{{- if and (eq .Values.workloadKind "Deployment") .Values.persistence.enabled (not $shareable) $several -}}
persistence.accessModes={{ toJson .Values.persistence.accessModes }} cannot be shared by several replicas of a Deployment (replicaCount={{ int .Values.replicaCount }}, autoscaling={{ $autoscaled }}): use [ReadWriteMany], workloadKind=StatefulSet (a volume per replica) or persistence.existingClaim of a ReadWriteMany claim
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.statefulSetStrategy" -}}
{{- if and (eq .Values.workloadKind "StatefulSet") (eq (toString .Values.updateStrategy.type) "Recreate") -}}
updateStrategy.type=Recreate is not a StatefulSet strategy: use RollingUpdate (one pod at a time, old pod first) or OnDelete
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.gracePeriod" -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (int (include "llama-ascend.shutdownTimeout" .)) -}}
{{- $grace := .Values.terminationGracePeriodSeconds -}}
{{- if and (not (kindIs "invalid" $grace)) (lt (int $grace) (int $drain)) -}}
terminationGracePeriodSeconds={{ int $grace }} is below preStopSleepSeconds + config.server.shutdown_timeout = {{ $drain }}: in-flight requests would be killed; raise it or leave it null to derive it
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.apiKeyOnce" -}}
{{- if and .Values.apiKey.value .Values.apiKey.existingSecret -}}
apiKey.value and apiKey.existingSecret are both set: give one
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.hfTokenOnce" -}}
{{- if and .Values.hfToken.value .Values.hfToken.existingSecret -}}
hfToken.value and hfToken.existingSecret are both set: give one
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.apiKeyUnused" -}}
{{- if and (include "llama-ascend.apiKeySecret" .) (not (include "llama-ascend.apiKeyEnv" .)) -}}
an API key is given (apiKey) but config.server.api_key_env is null, so the server would not require it: set config.server.api_key_env=VLLM_API_KEY
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.apiKeyMissing" -}}
{{- $variable := include "llama-ascend.apiKeyEnv" . -}}
{{- if and $variable (not (include "llama-ascend.apiKeySecret" .)) -}}
config.server.api_key_env={{ $variable }} but no key is given: set apiKey.existingSecret (and apiKey.key) or apiKey.value
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.npuResources" -}}
{{- $npus := int (include "llama-ascend.npuCount" .) -}}
{{- range $section := list "requests" "limits" -}}
{{- $listed := dig $section $.Values.npu.resourceName "" (default (dict) $.Values.resources) -}}
{{- if and (ne (toString $listed) "") (ne (int $listed) $npus) }}
resources.{{ $section }}[{{ $.Values.npu.resourceName }}]={{ $listed }} disagrees with config.server.tensor_parallel_size ({{ $npus }} NPUs on backend {{ include "llama-ascend.backend" $ }}): remove it, the chart derives it
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.driverMounts" -}}
{{- if and .Values.ascend.driverMounts.enabled (ne (include "llama-ascend.backend" .) "ascend") -}}
ascend.driverMounts.enabled is for backend ascend; config.backend is cpu: disable it
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.routerOrPool" -}}
{{- if and .Values.router.enabled .Values.inferencePool.enabled -}}
router.enabled and inferencePool.enabled are both true: the router is the chart's own endpoint, an InferencePool hands the pods to a Gateway's endpoint picker; enable one
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.routerWorkers" -}}
{{- $workers := (include "llama-ascend.config" . | fromJson).router.workers -}}
{{- if and .Values.router.enabled $workers -}}
config.router.workers={{ toJson $workers }} with router.enabled: in the chart the router finds the model pods by their labels; drop the static list
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.poolPicker" -}}
{{- if and .Values.inferencePool.enabled (not .Values.inferencePool.endpointPickerRef.name) -}}
inferencePool.enabled needs inferencePool.endpointPickerRef.name, the endpoint picker's Service (the InferencePool v1 API requires one)
{{- end -}}
{{- end -}}

{{- define "llama-ascend.validate.keyedReadiness" -}}
{{- $path := .Values.readinessProbe.path -}}
{{- if and .Values.readinessProbe.enabled (include "llama-ascend.apiKeyEnv" .) (hasPrefix "/v1" $path) (ne $path "/v1/models") -}}
readinessProbe.path={{ $path }} needs the API key, and the keyed readiness check (`llama-ascend probe ready`) asks /v1/models: use /v1/models, or a path outside /v1 (e.g. /health)
{{- end -}}
{{- end -}}
