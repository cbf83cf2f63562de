{{/*
The pod shared by the Deployment and the StatefulSet: the fetch init container, the server and the optional sidecars
(_containers.tpl), and the volumes they mount.
*/}}
{{- define "llama-ascend.podTemplate" -}}
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
    {{- include "llama-ascend.fetchContainer" . | nindent 4 }}
    {{- end }}
    {{- with .Values.initContainers }}
    {{- tpl (toYaml .) $ | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    {{- include "llama-ascend.serverContainer" . | nindent 4 }}
    {{- if .Values.exporter.enabled }}
    {{- include "llama-ascend.exporterContainer" . | nindent 4 }}
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
    {{- with include "llama-ascend.driverMounts" (dict "context" . "as" "volumes") }}{{ . | trim | nindent 4 }}{{ end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
