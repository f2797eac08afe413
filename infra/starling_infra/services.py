"""The stream services, the gateway and the identity service, from our own chart
`charts/starling-services`.

This component only computes values; what the chart renders is the chart's business, so the
same chart can be deployed by a GitOps tool with the same values. The values follow the
contract agreed with the chart (its values.schema.json is the authority).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from starling.runtime.config import SERVICE_NAMES as RUNNABLE_SERVICES
from starling_infra import meta
from starling_infra.config import ServicesConfig, split_image
from starling_infra.identity import AuthValues
from starling_infra.store import CA_SECRET_NAME
from starling_infra.tls import CA_CERT_KEY

_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
# Argon2id holds 64 MiB per hash and the identity service runs up to 4 at once.
_IDENTITY_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "384Mi"},
    "limits": {"memory": "512Mi"},
}


def _service_values(name: str, settings: ServicesConfig, auth: AuthValues) -> dict[str, Any]:
    return {
        # Only what `starling run` can start: a name without an implementation would leave a
        # crash-looping pod behind. The identity service runs only as the built-in issuer.
        "enabled": name in RUNNABLE_SERVICES and (name != "identity" or auth.builtin),
        "replicas": settings.replicas,
        # The Secret of this name is written by the Strimzi User Operator (key `password`).
        "kafkaUser": f"starling-{name}",
        "resources": _IDENTITY_RESOURCES if name == "identity" else _RESOURCES,
        "autoscaling": {
            "enabled": settings.autoscaling,
            "minReplicas": settings.replicas,
            "maxReplicas": settings.max_replicas,
            "targetCPUUtilizationPercentage": 75,
        },
    }


def chart_values(
    settings: ServicesConfig,
    image: str,
    pull_policy: str,
    store_host: str,
    store_password_secret: str,
    auth: AuthValues,
) -> dict[str, Any]:
    repository, tag = split_image(image)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": pull_policy},
        "kafka": {
            "bootstrapServers": meta.KAFKA_BOOTSTRAP,
            "securityProtocol": "SASL_SSL",
            "saslMechanism": "SCRAM-SHA-512",
            "caSecret": {"name": meta.KAFKA_CLUSTER_CA_SECRET, "key": "ca.crt"},
        },
        "store": {
            "host": store_host,
            "port": meta.STORE_PORT,
            "passwordSecret": {"name": store_password_secret, "key": "password"},
            # The store speaks TLS only; services verify it against the internal CA.
            "tls": {"enabled": True, "caSecret": {"name": CA_SECRET_NAME, "key": CA_CERT_KEY}},
        },
        "services": {name: _service_values(name, settings, auth) for name in meta.SERVICE_NAMES},
        "networkPolicy": {"enabled": settings.network_policy},
        "podDisruptionBudget": {"enabled": settings.pod_disruption_budget, "minAvailable": 1},
        "metrics": {"port": meta.METRICS_PORT},
        "gateway": {
            "service": {"type": "ClusterIP", "port": meta.GATEWAY_PORT},
            "trustUserHeader": auth.trust_user_header,
        },
        "identity": auth.identity,
    }


@dataclass(frozen=True)
class ServicesArgs:
    settings: ServicesConfig
    image: str
    pull_policy: str
    namespace: pulumi.Input[str]
    store_host: str
    store_password_secret: str
    auth: AuthValues
    # Kafka users and topics (their Secrets must exist before a pod starts) and the store.
    depends_on: Sequence[pulumi.Resource]


class Services(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    # None when the gateway is not among the runnable services (see `_service_values`).
    gateway_url: str | None
    # The built-in identity service's in-cluster URL; None when it is not deployed.
    identity_url: str | None

    def __init__(
        self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:services:Services", name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=meta.SERVICES_RELEASE,
                # A local chart: its path is absolute because Pulumi runs us from infra/.
                chart=str(meta.SERVICES_CHART_DIR),
                namespace=args.namespace,
                values=chart_values(
                    args.settings,
                    args.image,
                    args.pull_policy,
                    args.store_host,
                    args.store_password_secret,
                    args.auth,
                ),
                timeout=600,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        # The chart names the gateway Service `<release>-gateway`.
        self.gateway_url = (
            f"http://{meta.SERVICES_RELEASE}-gateway.{meta.NAMESPACE}.svc:{meta.GATEWAY_PORT}"
            if "gateway" in RUNNABLE_SERVICES
            else None
        )
        self.identity_url = meta.IDENTITY_IN_CLUSTER_URL if args.auth.builtin else None
        self.register_outputs({"gatewayUrl": self.gateway_url, "identityUrl": self.identity_url})
