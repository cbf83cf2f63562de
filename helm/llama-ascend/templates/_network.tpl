{{/* The ingress rule for clients of the API port: labelled pods, the ingress controller, networkPolicy.allowedClients
(or everyone with networkPolicy.allowExternal). On the router with router.enabled, else on the model pods. */}}
{{- define "llama-ascend.clientIngress" -}}
- ports:
    - port: http
      protocol: TCP
  {{- if not .Values.networkPolicy.allowExternal }}
  from:
    - podSelector:
        matchLabels:
          {{ include "llama-ascend.clientLabel" . }}: "true"
    {{- if .Values.ingress.enabled }}
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.ingressControllerNamespaceSelector | nindent 8 }}
    {{- end }}
    {{- with .Values.networkPolicy.allowedClients }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end -}}
