{{/* One ServiceAccount per service, so RBAC or cloud identity can be granted per service later. */}}
{{- define "starling-services.serviceAccount" -}}
{{- $service := index .context.Values.services .component -}}
{{- if $service.enabled }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "starling-services.componentName" . }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
