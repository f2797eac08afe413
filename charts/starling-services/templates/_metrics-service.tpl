{{/*
The metrics Service of one service: always ClusterIP, so exposing the gateway's HTTP
Service outside the cluster never exposes /metrics with it.
*/}}
{{- define "starling-services.metricsService" -}}
{{- $service := index .context.Values.services .component -}}
{{- if $service.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "starling-services.componentName" (dict "context" .context "component" .component "suffix" "metrics") }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "starling-services.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .context.Values.metrics.port }}
      targetPort: metrics
      protocol: TCP
{{- end }}
{{- end -}}
