"""The store: a single Valkey (Redis protocol) that holds timelines, notifications and trends.

One replica is enough for what it holds: every entry can be rebuilt from Kafka. It runs as the
image's unprivileged user under the restricted profile, with its config (and password) in a
Secret file rather than on the command line or in its environment, where any process (and
`kubectl describe`) could read it.

It speaks TLS only (`port 0`, `tls-port`): its certificate comes from the program's internal
CA (tls.py), names the store's Service, and clients verify both the chain and the name. The
CA certificate alone is published in its own Secret (`starling-internal-ca`) for clients to
mount, so no client pod ever receives the store's private key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from starling_infra import meta
from starling_infra.config import StoreConfig
from starling_infra.passwords import Purposes, derive_password
from starling_infra.security import (
    restricted_container_security_context,
    single_pod_stateful_set_spec,
)
from starling_infra.tls import (
    CA_CERT_KEY,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    ca_certificate,
    tls_secret_data,
)

COMPONENT = "store"
VALKEY_UID = 999  # the `valkey` user of the official image
PASSWORD_KEY = "password"
CONFIG_KEY = "valkey.conf"
DATA_DIR = "/data"
CONFIG_DIR = "/etc/valkey"
# Not under CONFIG_DIR: a mount point inside a read-only Secret volume cannot be created.
TLS_DIR = "/etc/valkey-tls"
# The store's certificate and key (kubernetes.io/tls, plus ca.crt).
TLS_SECRET_NAME = f"{meta.STORE_NAME}-tls"
# The internal CA certificate alone, what clients mount to verify servers.
CA_SECRET_NAME = "starling-internal-ca"
TLS_PURPOSE = "store"


def store_dns_names(namespace: str = meta.NAMESPACE) -> list[str]:
    """The names a client may use for the store, and loopback for the pod's own probes."""
    service = meta.STORE_NAME
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ]


def valkey_conf(password: str, persistent: bool, max_memory_bytes: int) -> str:
    lines = [
        "bind * -::*",
        # TLS only: no plain-text port at all.
        "port 0",
        f"tls-port {meta.STORE_PORT}",
        f"tls-cert-file {TLS_DIR}/{TLS_CERT_KEY}",
        f"tls-key-file {TLS_DIR}/{TLS_KEY_KEY}",
        f"tls-ca-cert-file {TLS_DIR}/{CA_CERT_KEY}",
        # Clients prove who they are with the password; they present no certificate.
        "tls-auth-clients no",
        'tls-protocols "TLSv1.2 TLSv1.3"',
        f"requirepass {password}",
        f"dir {DATA_DIR}",
        # Leave headroom under the container limit for replication buffers and forks.
        f"maxmemory {max_memory_bytes}",
        # Only keys with a TTL (caches) may be evicted; timelines and notifications may not.
        "maxmemory-policy volatile-lru",
    ]
    if persistent:
        lines += ["appendonly yes", "appendfsync everysec"]
    else:
        # Nothing survives the pod anyway; skip the disk writes.
        lines += ["appendonly no", 'save ""']
    return "\n".join(lines) + "\n"


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


# The probes talk TLS to loopback (in the certificate's names) and verify it like any client;
# the password reaches valkey-cli through the probe process's own environment, read from the
# mounted Secret file: never the container spec's env, never a command-line argument.
PROBE = (
    f'REDISCLI_AUTH="$(cat {CONFIG_DIR}/{PASSWORD_KEY})" '
    f"valkey-cli --tls --cacert {TLS_DIR}/{CA_CERT_KEY} -h 127.0.0.1 -p {meta.STORE_PORT} ping"
    " | grep -q PONG"
)


def quantity_bytes(quantity: str) -> int:
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(float(quantity))


def airflow_task_pods_peer() -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Airflow's scheduler, workers and triggerer: both selectors in one peer, so a pod must
    be in Airflow's namespace *and* carry the chart's labels of one of those components."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": meta.AIRFLOW_NAMESPACE}
        ),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels=meta.AIRFLOW_POD_LABELS,
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(
                    key="component", operator="In", values=list(meta.AIRFLOW_TASK_COMPONENTS)
                )
            ],
        ),
    )


@dataclass(frozen=True)
class StoreArgs:
    settings: StoreConfig
    image: str
    pull_policy: str
    namespace: pulumi.Input[str]
    secret_seed: pulumi.Output[str]


class Store(pulumi.ComponentResource):
    host: str
    port: int
    password_secret_name: str
    password: pulumi.Output[str]
    ca_secret_name: str
    ca_certificate: pulumi.Output[str]
    stateful_set: k8s.apps.v1.StatefulSet

    def __init__(
        self, name: str, args: StoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:store:Store", name, None, opts)
        settings = args.settings
        labels = meta.labels(meta.STORE_NAME, COMPONENT)
        selector = meta.selector_labels(meta.STORE_NAME)
        child = pulumi.ResourceOptions(parent=self)
        persistent = settings.persistence_size is not None

        def metadata(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels=labels
            )

        self.password = derive_password(args.secret_seed, Purposes.VALKEY)
        max_memory = int(quantity_bytes(settings.memory) * 0.8)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=metadata(meta.STORE_NAME),
            type="Opaque",
            string_data={
                PASSWORD_KEY: self.password,
                CONFIG_KEY: self.password.apply(
                    lambda password: valkey_conf(password, persistent, max_memory)
                ),
            },
            opts=child,
        )
        self.password_secret_name = meta.STORE_NAME
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=metadata(TLS_SECRET_NAME),
            type="kubernetes.io/tls",
            string_data=tls_secret_data(args.secret_seed, TLS_PURPOSE, store_dns_names()),
            opts=child,
        )
        ca_secret = k8s.core.v1.Secret(
            f"{name}-internal-ca",
            metadata=metadata(CA_SECRET_NAME),
            type="Opaque",
            string_data={CA_CERT_KEY: ca_certificate(args.secret_seed)},
            opts=child,
        )
        self.ca_secret_name = CA_SECRET_NAME
        self.ca_certificate = ca_certificate(args.secret_seed)

        service_port = k8s.core.v1.ServicePortArgs(
            name="valkey", port=meta.STORE_PORT, target_port="valkey", protocol="TCP"
        )
        headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata=metadata(f"{meta.STORE_NAME}-headless"),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None", selector=selector, ports=[service_port]
            ),
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(meta.STORE_NAME),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector, ports=[service_port]
            ),
            opts=child,
        )

        self.stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=metadata(meta.STORE_NAME),
            spec=self._stateful_set_spec(args, labels, selector, persistent),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[secret, tls_secret, ca_secret, headless]
            ),
        )

        # Only our own pods (services, tools) and the Airflow pods that run tasks or triggers
        # may talk to the store; the rest of Airflow's namespace (api-server, dag-processor,
        # migration jobs, its PostgreSQL) may not.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(meta.STORE_NAME),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"app.kubernetes.io/part-of": meta.PART_OF}
                                )
                            ),
                            airflow_task_pods_peer(),
                        ],
                        ports=[
                            k8s.networking.v1.NetworkPolicyPortArgs(
                                port=meta.STORE_PORT, protocol="TCP"
                            )
                        ],
                    )
                ],
            ),
            opts=child,
        )

        self.host = f"{meta.STORE_NAME}.{meta.NAMESPACE}.svc"
        self.port = meta.STORE_PORT
        self.register_outputs({"host": self.host, "port": self.port})

    def _stateful_set_spec(
        self,
        args: StoreArgs,
        labels: dict[str, str],
        selector: dict[str, str],
        persistent: bool,
    ) -> k8s.apps.v1.StatefulSetSpecArgs:
        settings = args.settings
        ping = k8s.core.v1.ExecActionArgs(command=["sh", "-c", PROBE])
        volumes = [
            k8s.core.v1.VolumeArgs(
                name="config",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=meta.STORE_NAME,
                    items=[
                        k8s.core.v1.KeyToPathArgs(key=CONFIG_KEY, path=CONFIG_KEY),
                        k8s.core.v1.KeyToPathArgs(key=PASSWORD_KEY, path=PASSWORD_KEY),
                    ],
                    default_mode=0o440,
                ),
            ),
            k8s.core.v1.VolumeArgs(
                name="tls",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=TLS_SECRET_NAME,
                    items=[
                        k8s.core.v1.KeyToPathArgs(key=key, path=key)
                        for key in (TLS_CERT_KEY, TLS_KEY_KEY, CA_CERT_KEY)
                    ],
                    default_mode=0o440,
                ),
            ),
            k8s.core.v1.VolumeArgs(
                name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi")
            ),
        ]
        claims = None
        if persistent:
            claims = [
                k8s.core.v1.PersistentVolumeClaimArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=labels),
                    spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                        access_modes=["ReadWriteOnce"],
                        storage_class_name=settings.storage_class,
                        resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                            requests={"storage": settings.persistence_size or ""}
                        ),
                    ),
                )
            ]
        else:
            volumes.append(
                k8s.core.v1.VolumeArgs(
                    name="data",
                    empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=settings.memory),
                )
            )
        container = k8s.core.v1.ContainerArgs(
            name="valkey",
            image=args.image,
            image_pull_policy=args.pull_policy,
            command=["valkey-server", f"{CONFIG_DIR}/{CONFIG_KEY}"],
            ports=[
                k8s.core.v1.ContainerPortArgs(
                    name="valkey", container_port=meta.STORE_PORT, protocol="TCP"
                )
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": settings.cpu, "memory": settings.memory},
                limits={"memory": settings.memory},
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                exec_=ping, initial_delay_seconds=10, period_seconds=10, timeout_seconds=3
            ),
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=ping, initial_delay_seconds=3, period_seconds=5, timeout_seconds=3
            ),
            security_context=restricted_container_security_context(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR),
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        return single_pod_stateful_set_spec(
            service_name=f"{meta.STORE_NAME}-headless",
            selector=selector,
            labels=labels,
            uid=VALKEY_UID,
            container=container,
            volumes=volumes,
            volume_claim_templates=claims,
        )
