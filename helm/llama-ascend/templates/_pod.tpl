{{/*
The pod shared by the Deployment and the StatefulSet: an init container that fetches the weights onto the volume,
the server (`llama-ascend serve`, which execs vLLM), and optional sidecars.
*/}}
{{- define "llama-ascend.podTemplate" -}}
{{- $port := include "llama-ascend.port" . | int -}}
{{- $apiKeyEnv := include "llama-ascend.apiKeyEnv" . -}}
metadata:
  labels:
    {{- include "llama-ascend.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "llama-ascend.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ include "llama-ascend.terminationGracePeriod" . }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.schedulerName }}
  schedulerName: {{ . }}
  {{- end }}
  {{- with .Values.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- if .Values.podSecurityContext.enabled }}
  securityContext:
    {{- toYaml (omit .Values.podSecurityContext "enabled") | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or .Values.fetch.enabled .Values.initContainers }}
  initContainers:
    {{- if .Values.fetch.enabled }}
    - name: fetch
      image: {{ include "llama-ascend.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - fetch
        - --config
        - /etc/llama-ascend/config.yaml
        {{- with .Values.fetch.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        {{- include "llama-ascend.baseEnv" . | nindent 8 }}
        {{- with include "llama-ascend.hfTokenEnv" . }}{{ . | trim | nindent 8 }}{{ end }}
      {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 6 }}{{ end }}
      resources:
        {{- toYaml .Values.fetch.resources | nindent 8 }}
      volumeMounts:
        {{- include "llama-ascend.commonMounts" . | nindent 8 }}
    {{- end }}
    {{- with .Values.initContainers }}
    {{- tpl (toYaml .) $ | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    - name: server
      image: {{ include "llama-ascend.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/llama-ascend/config.yaml
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $port }}
          protocol: TCP
      env:
        {{- include "llama-ascend.baseEnv" . | nindent 8 }}
        {{- with include "llama-ascend.hfTokenEnv" . }}{{ . | trim | nindent 8 }}{{ end }}
        {{- with include "llama-ascend.apiKeyEnv.var" . }}{{ . | trim | nindent 8 }}{{ end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .Values.startupProbe.enabled }}
      startupProbe:
        httpGet:
          path: /health
          port: http
        periodSeconds: {{ .Values.startupProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.startupProbe.timeoutSeconds }}
        failureThreshold: {{ include "llama-ascend.startupFailureThreshold" . }}
      {{- end }}
      {{- if .Values.readinessProbe.enabled }}
      readinessProbe:
        {{- if and $apiKeyEnv (hasPrefix "/v1" .Values.readinessProbe.path) }}
        exec:
          # /v1 routes need the API key: read it from the container's environment, never from the pod spec.
          command:
            - python3
            - -c
            - {{ printf "import os, urllib.request as r; r.urlopen(r.Request('http://127.0.0.1:%d%s', headers={'Authorization': 'Bearer ' + os.environ['%s']}), timeout=%d)" $port .Values.readinessProbe.path $apiKeyEnv (int .Values.readinessProbe.timeoutSeconds) | quote }}
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
      {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 6 }}{{ end }}
      resources:
        {{- include "llama-ascend.resources" . | nindent 8 }}
      volumeMounts:
        {{- include "llama-ascend.commonMounts" . | nindent 8 }}
        - name: shm
          mountPath: /dev/shm
        # The device plugin's huawei.com/AscendReal annotation: serve maps it to ASCEND_RT_VISIBLE_DEVICES (TP > 1).
        - name: podinfo
          mountPath: /etc/podinfo
          readOnly: true
        {{- if .Values.ascend.driverMounts.enabled }}
        {{- range $i, $path := .Values.ascend.driverMounts.paths }}
        - name: {{ printf "ascend-driver-%d" $i }}
          mountPath: {{ $path }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- if .Values.exporter.enabled }}
    - name: exporter
      image: {{ include "llama-ascend.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- tpl (toYaml .Values.exporter.args) (dict "port" .Values.exporter.port "Template" .Template) | nindent 8 }}
      ports:
        - name: npu-metrics
          containerPort: {{ .Values.exporter.port }}
          protocol: TCP
      env:
        {{- include "llama-ascend.baseEnv" . | nindent 8 }}
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
      {{- with include "llama-ascend.containerSecurityContext" . }}{{ . | trim | nindent 6 }}{{ end }}
      resources:
        {{- toYaml .Values.exporter.resources | nindent 8 }}
      volumeMounts:
        {{- include "llama-ascend.commonMounts" . | nindent 8 }}
        {{- if .Values.ascend.driverMounts.enabled }}
        {{- range $i, $path := .Values.ascend.driverMounts.paths }}
        - name: {{ printf "ascend-driver-%d" $i }}
          mountPath: {{ $path }}
          readOnly: true
        {{- end }}
        {{- end }}
    {{- end }}
    {{- with .Values.sidecars }}
    {{- tpl (toYaml .) $ | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "llama-ascend.fullname" . }}
    {{- if not .Values.persistence.enabled }}
    - name: models
      emptyDir: {}
    {{- else if or .Values.persistence.existingClaim (eq .Values.workloadKind "Deployment") }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "llama-ascend.claimName" . }}
    {{- end }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ .Values.shm.sizeLimit }}
    - name: podinfo
      downwardAPI:
        items:
          - path: annotations
            fieldRef:
              fieldPath: metadata.annotations
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if .Values.ascend.driverMounts.enabled }}
    {{- range $i, $path := .Values.ascend.driverMounts.paths }}
    - name: {{ printf "ascend-driver-%d" $i }}
      hostPath:
        path: {{ $path }}
    {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
