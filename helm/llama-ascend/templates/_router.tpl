{{/* The router (router.enabled): its names and the command that runs it with Kubernetes discovery of the model pods. */}}

{{- define "llama-ascend.routerName" -}}
{{- printf "%s-router" (include "llama-ascend.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llama-ascend.routerServiceAccountName" -}}
{{- default (include "llama-ascend.routerName" .) .Values.router.serviceAccount.name -}}
{{- end -}}

{{/* The Service of the model pods: the main one, or `<fullname>-server` when the main one is the router's. */}}
{{- define "llama-ascend.serverServiceName" -}}
{{- if .Values.router.enabled -}}
{{- printf "%s-server" (include "llama-ascend.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "llama-ascend.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* `llama-ascend router` finding the workers by the model pods' selector labels in the release namespace. */}}
{{- define "llama-ascend.routerArgs" -}}
- router
- --config
- /etc/llama-ascend/config.yaml
- --set
- {{ printf "router.discovery.selector=%s" (include "llama-ascend.selectorLabels" . | fromYaml | toJson) | quote }}
- --set
- {{ printf "router.discovery.namespace=%s" .Release.Namespace | quote }}
{{- end -}}
