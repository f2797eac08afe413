{{/*
Default-deny for one service's pods, then exactly the traffic it needs:

  in:  the metrics port from the release namespace and the monitoring namespaces;
       the gateway's and the identity service's HTTP port from the release namespace, the
       namespaces labelled `networkPolicy.http.namespaceLabels` (the ingress controller's)
       and the `networkPolicy.http.cidrs` (required when the Service is NodePort or
       LoadBalancer: its clients' addresses are not pod addresses); with
       gateway.trustUserHeader on, the gateway's HTTP port only from the named namespaces
       (where the authenticating proxy runs).
  out: the Kafka broker pods on the bootstrap port(s) (clients connect to each broker
       after bootstrap, so the brokers themselves, not only the bootstrap Service, must
       be reachable), the store, DNS, for the notifier the push webhook, and for the
       gateway in token mode the issuer's keys: the identity pods, or an external
       provider's port anywhere (it may be in the cluster or outside).

DNS is allowed to any destination on port 53: cluster DNS may be CoreDNS pods or a
node-local cache on a link-local address, and a label selector cannot cover both.
*/}}
{{- define "starling-services.networkPolicy" -}}
{{- $root := .context -}}
{{- $service := index $root.Values.services .component -}}
{{- $policy := $root.Values.networkPolicy -}}
{{- if and $service.enabled $policy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "starling-services.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "starling-services.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - podSelector: {}
        {{- with $policy.metricsNamespaceLabels }}
        - namespaceSelector:
            matchLabels:
              {{- toYaml . | nindent 14 }}
        {{- end }}
      ports:
        - port: {{ $root.Values.metrics.port }}
          protocol: TCP
    {{- if and (eq .component "gateway") $root.Values.gateway.trustUserHeader.enabled }}
    - ports:
        - port: {{ $root.Values.gateway.service.port }}
          protocol: TCP
      from:
        - namespaceSelector:
            matchExpressions:
              - key: kubernetes.io/metadata.name
                operator: In
                values:
                  {{- toYaml $root.Values.gateway.trustUserHeader.namespaces | nindent 18 }}
    {{- else if has .component (list "gateway" "identity") }}
    {{- $http := (index $root.Values .component).service }}
    {{- if and (ne $http.type "ClusterIP") (empty $policy.http.cidrs) }}
    {{- fail (printf "networkPolicy.http.cidrs: %s.service.type is %s, whose clients come from outside the cluster; list their CIDRs (0.0.0.0/0 admits every address)" .component $http.type) }}
    {{- end }}
    - ports:
        - port: {{ $http.port }}
          protocol: TCP
      from:
        - podSelector: {}
        {{- with $policy.http.namespaceLabels }}
        - namespaceSelector:
            matchLabels:
              {{- toYaml . | nindent 14 }}
        {{- end }}
        {{- range $policy.http.cidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
    {{- end }}
  egress:
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ include "starling-services.kafkaNamespace" $root }}
          podSelector:
            matchLabels:
              strimzi.io/cluster: {{ include "starling-services.kafkaClusterName" $root }}
              strimzi.io/kind: Kafka
              strimzi.io/broker-role: "true"
      ports:
        {{- range splitList "," (include "starling-services.kafkaPorts" $root) }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ include "starling-services.storeNamespace" $root }}
          podSelector:
            matchLabels:
              {{- required "networkPolicy.store.podLabels: set the labels of the store's pods (only they may be reached on the store port)" $policy.store.podLabels | toYaml | nindent 14 }}
      ports:
        - port: {{ $root.Values.store.port }}
          protocol: TCP
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- if and (eq .component "gateway") (not $root.Values.gateway.trustUserHeader.enabled) }}
    {{- if $root.Values.identity.issuerUrl }}
    - ports:
        - port: {{ include "starling-services.urlPort" ($root.Values.identity.jwksUrl | default $root.Values.identity.issuerUrl) }}
          protocol: TCP
    {{- else }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "starling-services.selectorLabels" (dict "context" $root "component" "identity") | nindent 14 }}
      ports:
        - port: {{ $root.Values.identity.service.port }}
          protocol: TCP
    {{- end }}
    {{- end }}
    {{- if eq .component "notifier" }}
    - to:
        - ipBlock:
            cidr: {{ $policy.pushWebhook.cidr }}
      ports:
        - port: {{ $policy.pushWebhook.port }}
          protocol: TCP
    {{- end }}
{{- end }}
{{- end -}}
