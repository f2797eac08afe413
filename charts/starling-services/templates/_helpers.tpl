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
{{- /* The image tag is what actually runs; appVersion only says what the chart expects.
A digest (`tag@sha256:...`) cannot go into a label value, so the label keeps the tag. */}}
app.kubernetes.io/version: {{ splitList "@" .context.Values.image.tag | first | trunc 63 | trimAll "-_." | quote }}
app.kubernetes.io/part-of: starling
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- end -}}

{{/*
Cross-field checks JSON Schema cannot express; called by every per-service template so
an error surfaces whichever object Helm renders first, naming the key to fix.
*/}}
{{- define "starling-services.validateService" -}}
{{- include "starling-services.validateAuth" .context -}}
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

{{/*
Identity: who signs the tokens the gateway verifies.

  external  identity.issuerUrl set: any OIDC provider; services.identity must be off.
  built-in  identity.issuerUrl empty: the identity service of this chart; its issuer is
            identity.publicUrl, else its in-cluster URL.
  header    gateway.trustUserHeader.enabled: an authenticating ingress sets the user header.
*/}}
{{- define "starling-services.identityInClusterUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "starling-services.componentName" (dict "context" . "component" "identity")) .Release.Namespace (int .Values.identity.service.port) -}}
{{- end -}}

{{- define "starling-services.builtinIssuer" -}}
{{- .Values.identity.publicUrl | default (include "starling-services.identityInClusterUrl" .) -}}
{{- end -}}

{{/* The issuer the gateway requires in `iss`. */}}
{{- define "starling-services.tokenIssuer" -}}
{{- .Values.identity.issuerUrl | default (include "starling-services.builtinIssuer" .) -}}
{{- end -}}

{{/* Where the gateway reads the signing keys; empty: the issuer's discovery document. */}}
{{- define "starling-services.jwksUrl" -}}
{{- if .Values.identity.issuerUrl -}}
{{- .Values.identity.jwksUrl -}}
{{- else -}}
{{- printf "%s/.well-known/jwks.json" (include "starling-services.identityInClusterUrl" .) -}}
{{- end -}}
{{- end -}}

{{/* TCP port of an http(s) URL: explicit, else 443 for https and 80 for http. */}}
{{- define "starling-services.urlPort" -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port -}}
{{- $port -}}
{{- else if eq $url.scheme "https" -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/* Cross-field checks of the identity settings; each failure names the keys to change. */}}
{{- define "starling-services.validateAuth" -}}
{{- $identity := .Values.identity -}}
{{- $trust := .Values.gateway.trustUserHeader -}}
{{- $builtin := .Values.services.identity.enabled -}}
{{- if and $identity.issuerUrl $builtin -}}
{{- fail "identity.issuerUrl names an external OIDC provider, so the gateway would refuse every token of the built-in identity service: set services.identity.enabled to false (or empty identity.issuerUrl)" -}}
{{- end -}}
{{- if and .Values.services.gateway.enabled (not $trust.enabled) (not $identity.issuerUrl) (not $builtin) -}}
{{- fail "identity.issuerUrl is empty, so the gateway trusts the built-in identity service, but services.identity.enabled is false: set identity.issuerUrl to your OIDC provider's issuer, or enable services.identity" -}}
{{- end -}}
{{- if and $identity.jwksUrl (not $identity.issuerUrl) -}}
{{- fail "identity.jwksUrl applies to an external provider (identity.issuerUrl); the built-in service's keys are read in-cluster" -}}
{{- end -}}
{{- if and (gt (int $identity.demoUsers) 0) (not $identity.devMode) -}}
{{- fail "identity.demoUsers needs identity.devMode: demo accounts sign in with the documented dev password" -}}
{{- end -}}
{{- if $trust.enabled -}}
{{- if not $trust.proxies -}}
{{- fail "gateway.trustUserHeader.enabled needs gateway.trustUserHeader.proxies: the CIDRs of the proxy whose X-Starling-User counts" -}}
{{- end -}}
{{- if not $trust.namespaces -}}
{{- fail "gateway.trustUserHeader.enabled needs gateway.trustUserHeader.namespaces: where the proxy runs (only they reach the gateway's HTTP port)" -}}
{{- end -}}
{{- if ne .Values.gateway.service.type "ClusterIP" -}}
{{- fail "gateway.trustUserHeader.enabled needs gateway.service.type ClusterIP: clients must come through the authenticating proxy, not around it" -}}
{{- end -}}
{{- end -}}
{{- end -}}
