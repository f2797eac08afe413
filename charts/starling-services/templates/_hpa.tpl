{{/* CPU-based autoscaling (autoscaling/v2), off unless services.<name>.autoscaling.enabled. */}}
{{- define "starling-services.horizontalPodAutoscaler" -}}
{{- $service := index .context.Values.services .component -}}
{{- if and $service.enabled $service.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "starling-services.componentName" . }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "starling-services.componentName" . }}
  minReplicas: {{ $service.autoscaling.minReplicas }}
  maxReplicas: {{ $service.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $service.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}
