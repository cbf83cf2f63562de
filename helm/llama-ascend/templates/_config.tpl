{{/*
The entrypoint config as the pods get it: the config model's defaults (files/config-defaults.json, generated from
llama_ascend.config by llama_ascend_dev.chart_schema) with `config:` over them, section by section, as the entrypoint
merges a profile over its defaults. The chart reads what it must know (backend, port, TP, ...) from here and never
restates a default. The ConfigMap still carries `config:` exactly as given.
*/}}
{{- define "llama-ascend.config" -}}
{{- $config := .Files.Get "files/config-defaults.json" | fromJson -}}
{{- range $key, $value := .Values.config -}}
{{- $section := get $config $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $section) -}}
{{- range $name, $item := $value -}}
{{- $_ := set $section $name $item -}}
{{- end -}}
{{- else -}}
{{- $_ := set $config $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $config -}}
{{- end -}}

{{- define "llama-ascend.backend" -}}
{{- (include "llama-ascend.config" . | fromJson).backend -}}
{{- end -}}

{{- define "llama-ascend.tensorParallel" -}}
{{- (include "llama-ascend.config" . | fromJson).server.tensor_parallel_size | int -}}
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
{{- (include "llama-ascend.config" . | fromJson).server.port | int -}}
{{- end -}}

{{- define "llama-ascend.shutdownTimeout" -}}
{{- (include "llama-ascend.config" . | fromJson).server.shutdown_timeout | int -}}
{{- end -}}

{{- define "llama-ascend.servedName" -}}
{{- (include "llama-ascend.config" . | fromJson).model.served_name -}}
{{- end -}}

{{- define "llama-ascend.apiKeyEnv" -}}
{{- (include "llama-ascend.config" . | fromJson).server.api_key_env | default "" -}}
{{- end -}}

{{- define "llama-ascend.tokenEnv" -}}
{{- (include "llama-ascend.config" . | fromJson).model.token_env -}}
{{- end -}}

{{/* Seconds the startup probe allows: loading, plus graph capture when the ascend backend compiles. */}}
{{- define "llama-ascend.startupBudget" -}}
{{- $budget := int .Values.startupProbe.loadBudgetSeconds -}}
{{- $eager := (include "llama-ascend.config" . | fromJson).server.enforce_eager -}}
{{- if and (eq (include "llama-ascend.backend" .) "ascend") (not $eager) -}}
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
