{{/*
The pod's containers: the fetch init container, the server (`llama-ascend serve`, which execs vLLM) and the NPU
exporter sidecar, and the pieces they share. Each renders as one list item at column 0 for `nindent`.
*/}}

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

{{/* The host's Ascend driver files (ascend.driverMounts): `mounts` for a container, `volumes` for the pod. */}}
{{- define "llama-ascend.driverMounts" -}}
{{- $ctx := .context -}}
{{- if $ctx.Values.ascend.driverMounts.enabled }}
{{- range $i, $path := $ctx.Values.ascend.driverMounts.paths }}
- name: {{ printf "ascend-driver-%d" $i }}
  {{- if eq $.as "volumes" }}
  hostPath:
    path: {{ $path }}
  {{- else }}
  mountPath: {{ $path }}
  readOnly: true
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "llama-ascend.fetchContainer" -}}
- name: fetch
  image: {{ include "llama-ascend.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - fetch
    - --config
    - /etc/llama-ascend/config.yaml
    {{- with .Values.fetch.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "llama-ascend.baseEnv" . | nindent 4 }}
    {{- with include "llama-ascend.hfTokenEnv" . }}{{ . | trim | nindent 4 }}{{ end }}
  {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 2 }}{{ end }}
  resources:
    {{- toYaml .Values.fetch.resources | nindent 4 }}
  volumeMounts:
    {{- include "llama-ascend.commonMounts" . | nindent 4 }}
{{- end -}}

{{/*
`llama-ascend probe CHECK` as an exec probe's command: everything it needs is given, so it never reads the config,
and the API key stays in the container's environment (only the variable's name is here, "" for none). Its own
timeout is 2 s under the kubelet's, so a slow answer fails with the probe's message instead of a kill.
*/}}
{{- define "llama-ascend.probeCommand" -}}
{{- $ctx := .context -}}
- llama-ascend
- probe
- {{ .check }}
- --port
- {{ include "llama-ascend.port" $ctx | quote }}
{{- if eq .check "warm" }}
- --model
- {{ include "llama-ascend.servedName" $ctx | quote }}
{{- end }}
- --api-key-env
- {{ include "llama-ascend.apiKeyEnv" $ctx | quote }}
- --timeout
- {{ max 1 (sub (int .timeoutSeconds) 2) | quote }}
{{- end -}}

{{- define "llama-ascend.serverContainer" -}}
{{- $port := include "llama-ascend.port" . | int -}}
{{- $apiKeyEnv := include "llama-ascend.apiKeyEnv" . -}}
- name: server
  image: {{ include "llama-ascend.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - serve
    - --config
    - /etc/llama-ascend/config.yaml
    {{- with .Values.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ $port }}
      protocol: TCP
  env:
    {{- include "llama-ascend.baseEnv" . | nindent 4 }}
    {{- with include "llama-ascend.hfTokenEnv" . }}{{ . | trim | nindent 4 }}{{ end }}
    {{- with include "llama-ascend.apiKeyEnv.var" . }}{{ . | trim | nindent 4 }}{{ end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.startupProbe.enabled }}
  startupProbe:
    {{- if .Values.startupProbe.warmup }}
    exec:
      # Ready means warm: one real 1-token completion, which on the NPU pays the first request's compilation.
      command:
        {{- include "llama-ascend.probeCommand" (dict "context" . "check" "warm" "timeoutSeconds" .Values.startupProbe.timeoutSeconds) | nindent 8 }}
    {{- else }}
    httpGet:
      path: /health
      port: http
    {{- end }}
    periodSeconds: {{ .Values.startupProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.startupProbe.timeoutSeconds }}
    failureThreshold: {{ include "llama-ascend.startupFailureThreshold" . }}
  {{- end }}
  {{- if .Values.readinessProbe.enabled }}
  readinessProbe:
    {{- if and $apiKeyEnv (hasPrefix "/v1" .Values.readinessProbe.path) }}
    exec:
      # /v1 routes need the API key: the probe reads it from the container's environment, never from the pod spec.
      command:
        {{- include "llama-ascend.probeCommand" (dict "context" . "check" "ready" "timeoutSeconds" .Values.readinessProbe.timeoutSeconds) | nindent 8 }}
    {{- else }}
    httpGet:
      path: {{ .Values.readinessProbe.path }}
      port: http
    {{- end }}
    periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
  {{- end }}
  {{- if .Values.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: {{ .Values.livenessProbe.path }}
      port: http
    periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
  {{- end }}
  lifecycle:
    preStop:
      exec:
        # Keep serving while endpoints and load balancers drop the pod; then SIGTERM starts vLLM's drain.
        command: ["sleep", "{{ int .Values.preStopSleepSeconds }}"]
  {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 2 }}{{ end }}
  resources:
    {{- include "llama-ascend.resources" . | nindent 4 }}
  volumeMounts:
    {{- include "llama-ascend.commonMounts" . | nindent 4 }}
    - name: shm
      mountPath: /dev/shm
    # The device plugin's huawei.com/AscendReal annotation: serve maps it to ASCEND_RT_VISIBLE_DEVICES (TP > 1).
    - name: podinfo
      mountPath: /etc/podinfo
      readOnly: true
    {{- with include "llama-ascend.driverMounts" (dict "context" . "as" "mounts") }}{{ . | trim | nindent 4 }}{{ end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "llama-ascend.exporterContainer" -}}
- name: exporter
  image: {{ include "llama-ascend.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    {{- tpl (toYaml .Values.exporter.args) (dict "port" .Values.exporter.port "Template" .Template) | nindent 4 }}
  ports:
    - name: npu-metrics
      containerPort: {{ .Values.exporter.port }}
      protocol: TCP
  env:
    {{- include "llama-ascend.baseEnv" . | nindent 4 }}
    # Who uses the cards, for the metrics' labels.
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: LLAMA_ASCEND_CONTAINER_NAME
      value: server
  readinessProbe:
    httpGet:
      path: /metrics
      port: npu-metrics
    periodSeconds: 30
    timeoutSeconds: 10
  livenessProbe:
    tcpSocket:
      port: npu-metrics
    periodSeconds: 30
    failureThreshold: 4
  {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 2 }}{{ end }}
  resources:
    {{- toYaml .Values.exporter.resources | nindent 4 }}
  volumeMounts:
    {{- include "llama-ascend.commonMounts" . | nindent 4 }}
    {{- with include "llama-ascend.driverMounts" (dict "context" . "as" "mounts") }}{{ . | trim | nindent 4 }}{{ end }}
{{- end -}}
