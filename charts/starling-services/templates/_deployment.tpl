{{/*
The Deployment every service shares: one image, `starling run <component>`, and the
restricted Pod Security profile. Rendered by templates/<component>/<component>-deployment.yaml
with (dict "context" $ "component" "<component>").
*/}}
{{- define "starling-services.deployment" -}}
{{- $root := .context -}}
{{- $service := index $root.Values.services .component -}}
{{- if $service.enabled }}
{{- include "starling-services.validateService" . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "starling-services.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "starling-services.labels" . | nindent 4 }}
spec:
  {{- /* With autoscaling on, the HPA owns the count; a value here would reset it on every upgrade. */}}
  {{- if not $service.autoscaling.enabled }}
  replicas: {{ $service.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "starling-services.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Surge before stopping: a single-replica consumer keeps its partitions served.
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "starling-services.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ include "starling-services.componentName" . }}
      # Services never call the Kubernetes API; no token means nothing to steal.
      automountServiceAccountToken: false
      # Docker-link env vars for every Service in the namespace are noise and leak topology.
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        # Prefer spreading replicas over nodes, but still schedule on a one-node kind cluster.
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "starling-services.selectorLabels" . | nindent 14 }}
      containers:
        - name: {{ .component }}
          image: {{ printf "%s:%s" $root.Values.image.repository $root.Values.image.tag | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["starling", "run", {{ .component | quote }}]
          env:
            - name: STARLING_SERVICE
              value: {{ .component | quote }}
            - name: KAFKA_BOOTSTRAP_SERVERS
              value: {{ $root.Values.kafka.bootstrapServers | quote }}
            - name: KAFKA_SECURITY_PROTOCOL
              value: {{ $root.Values.kafka.securityProtocol | quote }}
            - name: KAFKA_SASL_MECHANISM
              value: {{ $root.Values.kafka.saslMechanism | quote }}
            - name: KAFKA_SASL_USERNAME
              value: {{ $service.kafkaUser | quote }}
            {{- /* Secrets are files from read-only Secret volumes; env carries only their paths
                   (an env value shows in /proc/<pid>/environ, crash dumps and kubectl describe). */}}
            - name: KAFKA_SASL_PASSWORD_FILE
              value: /var/run/secrets/starling/kafka-user/password
            - name: KAFKA_SSL_CA_LOCATION
              value: /etc/starling/kafka-ca/ca.crt
            - name: STORE_HOST
              value: {{ $root.Values.store.host | quote }}
            - name: STORE_PORT
              value: {{ $root.Values.store.port | quote }}
            - name: STORE_PASSWORD_FILE
              value: /var/run/secrets/starling/store/password
            {{- if $root.Values.store.tls.enabled }}
            - name: STORE_TLS
              value: "true"
            - name: STORE_CA_FILE
              value: /var/run/secrets/starling/store-ca/ca.crt
            {{- end }}
            - name: METRICS_PORT
              value: {{ $root.Values.metrics.port | quote }}
            {{- if eq .component "gateway" }}
            - name: HTTP_PORT
              value: {{ $root.Values.gateway.service.port | quote }}
            {{- include "starling-services.gatewayAuthEnv" $root | nindent 12 }}
            {{- end }}
            {{- if eq .component "identity" }}
            - name: HTTP_PORT
              value: {{ $root.Values.identity.service.port | quote }}
            {{- include "starling-services.identityEnv" $root | nindent 12 }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
            {{- if has .component (list "gateway" "identity") }}
            - name: http
              containerPort: {{ (index $root.Values .component).service.port }}
              protocol: TCP
            {{- end }}
          # Startup gets up to a minute (consumer group join, store connection) before
          # liveness starts counting, so a slow start is not a restart loop.
          startupProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 3
          resources:
            {{- toYaml $service.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: kafka-ca
              mountPath: /etc/starling/kafka-ca
              readOnly: true
            - name: kafka-user
              mountPath: /var/run/secrets/starling/kafka-user
              readOnly: true
            - name: store-password
              mountPath: /var/run/secrets/starling/store
              readOnly: true
            {{- if $root.Values.store.tls.enabled }}
            - name: store-ca
              mountPath: /var/run/secrets/starling/store-ca
              readOnly: true
            {{- end }}
            {{- if eq .component "identity" }}
            - name: identity-seed
              mountPath: /etc/starling/identity
              readOnly: true
            {{- end }}
      volumes:
        # The root filesystem is read-only; librdkafka and Python still want a scratch dir.
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        - name: kafka-ca
          secret:
            secretName: {{ $root.Values.kafka.caSecret.name }}
            items:
              # A fixed file name, so KAFKA_SSL_CA_LOCATION does not depend on the key.
              - key: {{ $root.Values.kafka.caSecret.key }}
                path: ca.crt
        # Mode 0440: the container runs as uid 10001 and the kubelet gives the files to the
        # pod's fsGroup (10001), so the group bit is all the process needs; others get nothing.
        - name: kafka-user
          secret:
            # Written by the Strimzi User Operator for the KafkaUser of the same name.
            secretName: {{ $service.kafkaUser }}
            defaultMode: 0440
            items:
              - key: password
                path: password
        - name: store-password
          secret:
            secretName: {{ $root.Values.store.passwordSecret.name }}
            defaultMode: 0440
            items:
              - key: {{ $root.Values.store.passwordSecret.key }}
                path: password
        {{- if $root.Values.store.tls.enabled }}
        # The internal CA the store's certificate chains to: a Secret holding only ca.crt.
        - name: store-ca
          secret:
            secretName: {{ $root.Values.store.tls.caSecret.name }}
            defaultMode: 0444
            items:
              - key: {{ $root.Values.store.tls.caSecret.key }}
                path: ca.crt
        {{- end }}
        {{- if eq .component "identity" }}
        # The signing-key seed: a file, never an environment value (those show up in
        # `kubectl describe`, crash dumps and child processes). Readable by the pod's group only.
        - name: identity-seed
          secret:
            secretName: {{ $root.Values.identity.seedSecret.name }}
            defaultMode: 0440
            items:
              - key: {{ $root.Values.identity.seedSecret.key }}
                path: seed
        {{- end }}
{{- end }}
{{- end -}}

{{/* The gateway's authentication settings (services/starling/gateway/settings.py). */}}
{{- define "starling-services.gatewayAuthEnv" -}}
{{- $trust := .Values.gateway.trustUserHeader -}}
{{- if $trust.enabled -}}
- name: STARLING_GATEWAY_AUTH
  value: header
- name: STARLING_GATEWAY_TRUSTED_PROXIES
  value: {{ join "," $trust.proxies | quote }}
{{- else -}}
- name: STARLING_GATEWAY_AUTH
  value: token
- name: STARLING_GATEWAY_ISSUER
  value: {{ include "starling-services.tokenIssuer" . | quote }}
- name: STARLING_GATEWAY_AUDIENCE
  value: {{ .Values.identity.audience | quote }}
{{- with include "starling-services.jwksUrl" . }}
- name: STARLING_GATEWAY_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- /* Sign-out is a revoked session id in the store, which only the built-in issuer writes. */}}
- name: STARLING_GATEWAY_REVOCATION
  value: {{ ternary "none" "store" (not (empty .Values.identity.issuerUrl)) }}
{{- end -}}
{{- end -}}

{{/* The identity service's settings (services/starling/identity/settings.py). */}}
{{- define "starling-services.identityEnv" -}}
{{- $identity := .Values.identity -}}
- name: STARLING_IDENTITY_ISSUER
  value: {{ include "starling-services.builtinIssuer" . | quote }}
- name: STARLING_IDENTITY_AUDIENCE
  value: {{ $identity.audience | quote }}
- name: STARLING_IDENTITY_SEED_FILE
  value: /etc/starling/identity/seed
- name: STARLING_IDENTITY_SIGNING_KEYS
  value: {{ join "," $identity.signingKeys | quote }}
- name: STARLING_IDENTITY_TOKEN_TTL_S
  value: {{ $identity.tokenTtlSeconds | quote }}
- name: STARLING_IDENTITY_SIGNUP
  value: {{ $identity.signup | quote }}
- name: STARLING_IDENTITY_DEV_MODE
  value: {{ $identity.devMode | quote }}
- name: STARLING_IDENTITY_DEMO_USERS
  value: {{ $identity.demoUsers | quote }}
{{- with $identity.trustedProxies }}
- name: STARLING_IDENTITY_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}
