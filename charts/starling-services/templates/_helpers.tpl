{{/*
Naming and labels. Kubernetes names and label values stop at 63 characters, so every
name is cut there; component names keep their component suffix whole (see
starling-services.componentName).

Component-level helpers take a dict: (dict "context" $ "component" "<service>"), with an
optional "suffix". Chart-level helpers take the root context.
*/}}

{{/* The chart's short name, app.kubernetes.io/name. */}}
{{- define "starling-services.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object name. A release already named after the chart (e.g. "starling-
services" or "prod-starling-services") is not repeated: "<release>-<chart>" otherwise.
*/}}
{{- define "starling-services.fullname" -}}
{{- $full := .Values.fullnameOverride -}}
{{- if not $full -}}
{{- $name := include "starling-services.name" . -}}
{{- $full = .Release.Name -}}
{{- if not (contains $name .Release.Name) -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- end -}}
{{- $full | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
"<fullname>-<component>[-<suffix>]". The prefix is the part that gets shortened: cutting
the whole string instead could make "...-timelines" and "...-trends" collide, or drop
"-metrics" so two Services share a name.
*/}}
{{- define "starling-services.componentName" -}}
{{- $tail := printf "-%s" .component -}}
{{- with .suffix -}}
{{- $tail = printf "%s-%s" $tail . -}}
{{- end -}}
{{- $room := sub 63 (len $tail) | int -}}
{{- $prefix := include "starling-services.fullname" .context | trunc $room | trimSuffix "-" -}}
{{- printf "%s%s" $prefix $tail -}}
{{- end -}}

{{/* Labels selectors match on: stable for the life of a release (selectors are immutable). */}}
{{- define "starling-services.selectorLabels" -}}
app.kubernetes.io/name: {{ include "starling-services.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Every object's labels: the selector labels plus what kubectl users filter on. */}}
{{- define "starling-services.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "starling-services.selectorLabels" . }}
{{- /* The image tag is what actually runs; appVersion only says what the chart expects. */}}
app.kubernetes.io/version: {{ .context.Values.image.tag | trunc 63 | trimAll "-_." | quote }}
app.kubernetes.io/part-of: starling
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- end -}}

{{/*
Cross-field checks JSON Schema cannot express; called by every per-service template so
an error surfaces whichever object Helm renders first, naming the key to fix.
*/}}
{{- define "starling-services.validateService" -}}
{{- $service := index .context.Values.services .component -}}
{{- $scaling := $service.autoscaling -}}
{{- if and $scaling.enabled (lt (int $scaling.maxReplicas) (int $scaling.minReplicas)) -}}
{{- fail (printf "services.%s.autoscaling.maxReplicas (%d) must be >= services.%s.autoscaling.minReplicas (%d)" .component (int $scaling.maxReplicas) .component (int $scaling.minReplicas)) -}}
{{- end -}}
{{- end -}}

{{/*
Namespace part of an in-cluster DNS name ("svc.ns", "svc.ns.svc.cluster.local"); the
release namespace for a bare Service name. Takes (dict "host" ... "context" $).
*/}}
{{- define "starling-services.namespaceOfHost" -}}
{{- $labels := splitList "." .host -}}
{{- if gt (len $labels) 1 -}}
{{- index $labels 1 -}}
{{- else -}}
{{- .context.Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* "host" of "host:port" (the first bootstrap address when given a list). */}}
{{- define "starling-services.kafkaBootstrapHost" -}}
{{- $first := splitList "," .Values.kafka.bootstrapServers | first | trim -}}
{{- regexReplaceAll ":[0-9]+$" $first "" -}}
{{- end -}}

{{/* Distinct ports of the bootstrap addresses, comma-separated: Strimzi brokers listen on the same port. */}}
{{- define "starling-services.kafkaPorts" -}}
{{- $ports := list -}}
{{- range splitList "," .Values.kafka.bootstrapServers -}}
{{- $ports = append $ports (regexFind "[0-9]+$" (trim .)) -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/*
The Strimzi cluster name: networkPolicy.kafka.clusterName, else read from the bootstrap
Service name Strimzi gives it, "<cluster>-kafka-bootstrap".
*/}}
{{- define "starling-services.kafkaClusterName" -}}
{{- $host := include "starling-services.kafkaBootstrapHost" . -}}
{{- $service := splitList "." $host | first -}}
{{- if .Values.networkPolicy.kafka.clusterName -}}
{{- .Values.networkPolicy.kafka.clusterName -}}
{{- else if hasSuffix "-kafka-bootstrap" $service -}}
{{- trimSuffix "-kafka-bootstrap" $service -}}
{{- else -}}
{{- fail (printf "networkPolicy.kafka.clusterName: cannot tell the Strimzi cluster from kafka.bootstrapServers %q (expected <cluster>-kafka-bootstrap...); set networkPolicy.kafka.clusterName" .Values.kafka.bootstrapServers) -}}
{{- end -}}
{{- end -}}

{{- define "starling-services.kafkaNamespace" -}}
{{- .Values.networkPolicy.kafka.namespace | default (include "starling-services.namespaceOfHost" (dict "host" (include "starling-services.kafkaBootstrapHost" .) "context" .)) -}}
{{- end -}}

{{- define "starling-services.storeNamespace" -}}
{{- .Values.networkPolicy.store.namespace | default (include "starling-services.namespaceOfHost" (dict "host" .Values.store.host "context" .)) -}}
{{- end -}}
