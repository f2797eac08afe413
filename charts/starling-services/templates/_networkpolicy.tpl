{{/*
Default-deny for one service's pods, then exactly the traffic it needs:

  in:  the metrics port from the release namespace and the monitoring namespaces;
       the gateway's HTTP port from every namespace (or from anywhere when its Service
       is exposed outside the cluster, where client addresses are not pod addresses).
  out: the Kafka broker pods on the bootstrap port(s) (clients connect to each broker
       after bootstrap, so the brokers themselves, not only the bootstrap Service, must
       be reachable), the store, DNS, and for the notifier the push webhook.

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
    {{- if eq .component "gateway" }}
    - ports:
        - port: {{ $root.Values.gateway.service.port }}
          protocol: TCP
      {{- if eq $root.Values.gateway.service.type "ClusterIP" }}
      from:
        - namespaceSelector: {}
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
            {{- with $policy.store.podLabels }}
            matchLabels:
              {{- toYaml . | nindent 14 }}
            {{- else }} {}
            {{- end }}
      ports:
        - port: {{ $root.Values.store.port }}
          protocol: TCP
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
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
