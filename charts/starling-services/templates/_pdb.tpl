{{/*
A PodDisruptionBudget only where it can be honoured. With minAvailable 1 on a service
that may run a single pod (replicas 1, or an HPA allowed down to 1), no pod could ever
be evicted and `kubectl drain` would hang on that node. So the budget is rendered only
when the service's replica floor (autoscaling.minReplicas with an HPA, else replicas)
is above minAvailable, i.e. one voluntary eviction is always possible.
*/}}
{{- define "starling-services.podDisruptionBudget" -}}
{{- $root := .context -}}
{{- $service := index $root.Values.services .component -}}
{{- $budget := $root.Values.podDisruptionBudget -}}
{{- $floor := $service.replicas -}}
{{- if $service.autoscaling.enabled -}}
{{- $floor = $service.autoscaling.minReplicas -}}
{{- end -}}
{{- if and $service.enabled $budget.enabled (gt (int $floor) (int $budget.minAvailable)) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "starling-services.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
spec:
  minAvailable: {{ $budget.minAvailable }}
  selector:
    matchLabels:
      {{- include "starling-services.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
