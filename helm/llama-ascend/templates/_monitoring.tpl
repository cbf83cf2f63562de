{{/*
The alerts of docs/monitoring.md, one definition: templates/prometheusrule.yaml renders them into a PrometheusRule and
llama_ascend_dev.alert_rules writes the same groups as a plain rules file (monitoring/llama-ascend-rules.yaml). Thresholds,
`for` and severities are values (prometheusRule.alerts.*); Prometheus' own templates ({{`{{ $labels.pod }}`}}) are
kept verbatim with raw strings.
*/}}

{{/* Label matchers of the server's and the exporter's series: what the ServiceMonitor attaches. */}}
{{- define "llama-ascend.monitoringSelector" -}}
{{- default (printf `namespace="%s",job="%s"` .Release.Namespace (include "llama-ascend.fullname" .)) .Values.prometheusRule.selector -}}
{{- end -}}

{{- define "llama-ascend.routerSelector" -}}
{{- default (printf `namespace="%s",job="%s-router"` .Release.Namespace (include "llama-ascend.fullname" .)) .Values.prometheusRule.routerSelector -}}
{{- end -}}

{{/* One rule. Call with (dict "ctx" $ "name" NAME "cfg" .Values.prometheusRule.alerts.X "expr" PROMQL "summary" S
"description" D "runbook" R). */}}
{{- define "llama-ascend.alertRule" -}}
- alert: {{ .name }}
  expr: |-
    {{ .expr }}
  for: {{ .cfg.for }}
  labels:
    severity: {{ .cfg.severity }}
    {{- with .ctx.Values.prometheusRule.additionalLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: {{ .summary | quote }}
    description: {{ .description | quote }}
    runbook: {{ .runbook | quote }}
    {{- with .ctx.Values.prometheusRule.runbookUrl }}
    runbook_url: {{ printf "%s#%s" . (lower $.name) | quote }}
    {{- end }}
{{- end -}}

{{- define "llama-ascend.alertGroups" -}}
{{- $s := include "llama-ascend.monitoringSelector" . -}}
{{- $r := include "llama-ascend.routerSelector" . -}}
{{- $a := .Values.prometheusRule.alerts -}}
{{- $at := `{{ $labels.namespace }}/{{ $labels.pod }}` -}}
{{- $card := `{{ $labels.namespace }}/{{ $labels.pod }} NPU {{ $labels.id }}` -}}
- name: llama-ascend.server
  rules:
  {{- if $a.targetDown.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendTargetDown" "cfg" $a.targetDown
      "expr" (printf `up{%s} == 0 and on (job, instance) max_over_time(up{%s}[1h]) == 1` $s $s)
      "summary" (printf `Prometheus cannot scrape %s ({{ $labels.instance }})` $at)
      "description" (printf `The scrape of {{ $labels.instance }} (pod %s, job {{ $labels.job }}), which answered within the last hour, has failed for %s: the server or the exporter sidecar stopped answering /metrics. (A pod that is still starting is not a target that went down: LlamaAscendNoReadyReplica covers a deployment that never comes up.)` $at $a.targetDown.for)
      "runbook" "First check the pod: `kubectl -n NAMESPACE get pod POD` (Running? restarts?), then `kubectl -n NAMESPACE logs POD -c server` (or -c exporter for the exporter port).") | nindent 4 }}
  {{- end }}
  {{- if $a.noReadyReplica.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendNoReadyReplica" "cfg" $a.noReadyReplica
      "expr" (printf `absent(vllm:num_requests_running{%s})` $s)
      "summary" `No replica of {{ $labels.namespace }}/{{ $labels.job }} is serving`
      "description" (printf `No vLLM server of {{ $labels.namespace }}/{{ $labels.job }} has answered /metrics for %s: vLLM serves it only once the model is loaded, so no replica is ready.` $a.noReadyReplica.for)
      "runbook" "First check why the pods are not ready: `kubectl -n NAMESPACE describe pod -l app.kubernetes.io/component=server` (Pending on NPUs, init container fetch, preflight exit 3, startup probe), then the fetch and server logs.") | nindent 4 }}
  {{- end }}
  {{- if $a.requestsWaiting.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendRequestsWaiting" "cfg" $a.requestsWaiting
      "expr" (printf `max by (namespace, job, pod) (vllm:num_requests_waiting{%s}) > %v` $s $a.requestsWaiting.threshold)
      "summary" (printf `%s has {{ $value }} requests waiting` $at)
      "description" (printf `%s has had more than %v requests waiting (now {{ $value }}) for %s: the replica is saturated.` $at $a.requestsWaiting.threshold $a.requestsWaiting.for)
      "runbook" "First check the dashboard's Load row: if KV cache is full too, add replicas (autoscaling.hpa or autoscaling.keda) or cards; if not, check config.server.max_num_seqs.") | nindent 4 }}
  {{- end }}
  {{- if $a.kvCacheHigh.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendKVCacheHigh" "cfg" $a.kvCacheHigh
      "expr" (printf `max by (namespace, job, pod) (vllm:kv_cache_usage_perc{%s}) > %v` $s $a.kvCacheHigh.threshold)
      "summary" (printf `%s KV cache is {{ $value | humanizePercentage }} full` $at)
      "description" (printf `The KV cache of %s has been above %v (now {{ $value | humanizePercentage }}) for %s; requests start to wait and get preempted.` $at $a.kvCacheHigh.threshold $a.kvCacheHigh.for)
      "runbook" "First check the waiting queue and preemptions on the dashboard; then add replicas, or lower config.server.max_num_seqs / max_model_len, or raise gpu_memory_utilization.") | nindent 4 }}
  {{- end }}
  {{- if $a.preemptions.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendPreemptions" "cfg" $a.preemptions
      "expr" (printf `sum by (namespace, job, pod) (increase(vllm:num_preemptions_total{%s}[%s])) > %v` $s $a.preemptions.window $a.preemptions.threshold)
      "summary" (printf `%s preempts requests` $at)
      "description" (printf `%s preempted {{ $value }} requests in the last %s (threshold %v), for %s: the KV cache is too small for the batch.` $at $a.preemptions.window $a.preemptions.threshold $a.preemptions.for)
      "runbook" "First check KV-cache usage on the dashboard; lower config.server.max_num_seqs or max_model_len, or add cards (tensor_parallel_size) or replicas.") | nindent 4 }}
  {{- end }}
  {{- if $a.ttftHigh.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendTTFTHigh" "cfg" $a.ttftHigh
      "expr" (printf `histogram_quantile(0.99, sum by (namespace, job, le) (rate(vllm:time_to_first_token_seconds_bucket{%s}[5m]))) > %v` $s $a.ttftHigh.sloSeconds)
      "summary" `p99 time to first token of {{ $labels.namespace }}/{{ $labels.job }} is {{ $value | humanizeDuration }}`
      "description" (printf `The p99 time to first token of {{ $labels.namespace }}/{{ $labels.job }} over 5m has been above the %vs SLO (now {{ $value | humanizeDuration }}) for %s.` $a.ttftHigh.sloSeconds $a.ttftHigh.for)
      "runbook" "First check the waiting queue and queue time on the dashboard (saturation: add replicas); if the queue is empty, long prompts or NPU trouble (the NPUs row).") | nindent 4 }}
  {{- end }}
  {{- if $a.errorRatio.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendErrorRatio" "cfg" $a.errorRatio
      "expr" (printf `sum by (namespace, job) (rate(http_requests_total{%s,status="5xx"}[5m])) / sum by (namespace, job) (rate(http_requests_total{%s}[5m])) > %v` $s $s $a.errorRatio.threshold)
      "summary" `{{ $value | humanizePercentage }} of the API responses of {{ $labels.namespace }}/{{ $labels.job }} are errors`
      "description" (printf `More than %v of the API responses of {{ $labels.namespace }}/{{ $labels.job }} over 5m were 5xx (now {{ $value | humanizePercentage }}) for %s.` $a.errorRatio.threshold $a.errorRatio.for)
      "runbook" "First check the server log for the engine error: `kubectl -n NAMESPACE logs POD -c server | grep -i error` (an engine that died answers 500 until it is restarted).") | nindent 4 }}
  {{- end }}
  {{- if $a.preflightFailed.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendPreflightFailed" "cfg" $a.preflightFailed
      "expr" (printf `llama_ascend_preflight_check_failed{%s} == 1` $s)
      "summary" (printf `Preflight check {{ $labels.check }} failed on %s` $at)
      "description" (printf `The last preflight on %s failed its {{ $labels.check }} check; serve stops with exit 3 until it passes.` $at)
      "runbook" "First check the preflight message: `kubectl -n NAMESPACE logs POD -c server` (the failure names the cause and the fix; docs/operate.md lists them per check).") | nindent 4 }}
  {{- end }}
- name: llama-ascend.npu
  rules:
  {{- if $a.npuUnhealthy.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendNpuUnhealthy" "cfg" $a.npuUnhealthy
      "expr" (printf `npu_chip_info_health_status{%s} != 1` $s)
      "summary" (printf `%s is not healthy` $card)
      "description" (printf `npu-smi reports %s (model {{ $labels.model_name }}) as {{ if eq $value 0.0 }}unhealthy (Warning, Alarm or Critical){{ else }}unknown{{ end }} for %s.` $card $a.npuUnhealthy.for)
      "runbook" "First check the card's error code on the node: `npu-smi info -t health -i ID`; then reset the card or drain the node.") | nindent 4 }}
  {{- end }}
  {{- if $a.npuSmiDown.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendNpuSmiDown" "cfg" $a.npuSmiDown
      "expr" (printf `llama_ascend_npu_smi_up{%s} == 0` $s)
      "summary" (printf `The exporter of %s cannot read npu-smi` $at)
      "description" (printf `llama-ascend exporter on %s has not read npu-smi for %s: the NPU series are missing.` $at $a.npuSmiDown.for)
      "runbook" "First check the exporter log: `kubectl -n NAMESPACE logs POD -c exporter` (DCMI -8005 / -8020, the driver not mounted); disable this alert where the sidecar cannot see the cards.") | nindent 4 }}
  {{- end }}
  {{- if $a.hbmNearFull.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendHbmNearFull" "cfg" $a.hbmNearFull
      "expr" (printf `npu_chip_info_hbm_used_memory{%s} / npu_chip_info_hbm_total_memory{%s} > %v` $s $s $a.hbmNearFull.threshold)
      "summary" (printf `%s HBM is {{ $value | humanizePercentage }} used` $card)
      "description" (printf `HBM of %s has been above %v used (now {{ $value | humanizePercentage }}) for %s; a process besides vLLM may hold the card.` $card $a.hbmNearFull.threshold $a.hbmNearFull.for)
      "runbook" "First check which processes hold the card: `npu-smi info` on the node (process table); another container on the same card is the usual cause.") | nindent 4 }}
  {{- end }}
  {{- if $a.npuTemperatureHigh.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendNpuTemperatureHigh" "cfg" $a.npuTemperatureHigh
      "expr" (printf `npu_chip_info_temperature{%s} > %v` $s $a.npuTemperatureHigh.celsius)
      "summary" (printf `%s is at {{ $value }} °C` $card)
      "description" (printf `%s has been hotter than %v °C (now {{ $value }} °C) for %s.` $card $a.npuTemperatureHigh.celsius $a.npuTemperatureHigh.for)
      "runbook" "First check the node's cooling and the card's power on the dashboard; `npu-smi info -t temp -i ID` on the node.") | nindent 4 }}
  {{- end }}
- name: llama-ascend.weights
  rules:
  {{- if $a.fetchFailed.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendWeightsFetchFailed" "cfg" $a.fetchFailed
      "expr" (printf `max by (namespace, job, pod, reason) (llama_ascend_fetch_failures_total{%s}) > 0 unless on (namespace, job, pod) (llama_ascend_model_weights_complete{%s} == 1)` $s $s)
      "summary" (printf `Fetching the weights failed on %s ({{ $labels.reason }})` $at)
      "description" (printf `A weights fetch on %s failed ({{ $labels.reason }}) and the weights on the volume are not complete, for %s.` $at $a.fetchFailed.for)
      "runbook" "First check the fetch log: `kubectl -n NAMESPACE logs POD -c fetch` (hub reachable? token? disk full?); docs/fetch.md.") | nindent 4 }}
  {{- end }}
- name: llama-ascend.router
  rules:
  {{- if $a.routerNoHealthyWorker.enabled }}
  {{- include "llama-ascend.alertRule" (dict "ctx" . "name" "LlamaAscendRouterNoHealthyWorker" "cfg" $a.routerNoHealthyWorker
      "expr" (printf `sum by (namespace, job, pod) (vllm_router_worker_health{%s} * on (namespace, job, pod, instance, worker) (vllm_router_cb_state{%s} != bool 1) or vllm_router_worker_health{%s}) == 0 or max by (namespace, job, pod) (vllm_router_active_workers{%s}) == 0` $r $r $r $r)
      "summary" `Router {{ $labels.namespace }}/{{ $labels.pod }} has no healthy worker`
      "description" (printf `The router {{ $labels.namespace }}/{{ $labels.pod }} (job {{ $labels.job }}) has had no worker that is healthy and whose circuit breaker is not open for %s: every request fails.` $a.routerNoHealthyWorker.for)
      "runbook" "First check the replicas behind it (this dashboard's Load and NPUs rows, `kubectl get pods`); then the router log for the health-check errors.") | nindent 4 }}
  {{- end }}
{{- end -}}
