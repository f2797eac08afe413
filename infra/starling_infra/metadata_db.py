"""Airflow's metadata database: one PostgreSQL we run ourselves.

The chart's bundled PostgreSQL pins a Bitnami image that was withdrawn upstream (installs end
in ImagePullBackOff) and does not meet the restricted profile our namespace enforces. The
official `postgres` image does, running as its `postgres` user with a read-only root.
Production should point Airflow at a managed database instead; this one is for a cluster
that has nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from starling_infra import meta
from starling_infra.passwords import Purposes, derive_password
from starling_infra.security import (
    restricted_container_security_context,
    single_pod_stateful_set_spec,
)

NAME = "starling-airflow-db"
COMPONENT = "metadata-db"
POSTGRES_UID = 999  # the `postgres` user of the official Debian-based image
PORT = 5432
DATABASE = "airflow"
USER = "airflow"
PASSWORD_KEY = "password"
# The key the Airflow chart reads from `data.metadataSecretName`.
CONNECTION_KEY = "connection"
DATA_MOUNT = "/var/lib/postgresql/data"


@dataclass(frozen=True)
class MetadataDatabaseArgs:
    image: str
    pull_policy: str
    namespace: pulumi.Input[str]
    secret_seed: pulumi.Output[str]
    storage_size: str | None
    storage_class: str | None


class MetadataDatabase(pulumi.ComponentResource):
    secret_name: str
    host: str
    stateful_set: k8s.apps.v1.StatefulSet

    def __init__(
        self, name: str, args: MetadataDatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:airflow:MetadataDatabase", name, None, opts)
        labels = meta.labels(NAME, COMPONENT)
        selector = meta.selector_labels(NAME)
        child = pulumi.ResourceOptions(parent=self)
        self.host = f"{NAME}.{meta.AIRFLOW_NAMESPACE}.svc"
        self.secret_name = NAME

        def metadata(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels=labels
            )

        password = derive_password(args.secret_seed, Purposes.AIRFLOW_DATABASE)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=metadata(NAME),
            type="Opaque",
            string_data={
                PASSWORD_KEY: password,
                # Hex passwords need no URL escaping.
                CONNECTION_KEY: password.apply(
                    lambda value: (
                        f"postgresql://{USER}:{value}@{self.host}:{PORT}/{DATABASE}?sslmode=disable"
                    )
                ),
            },
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(NAME),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="postgres", port=PORT, target_port="postgres", protocol="TCP"
                    )
                ],
            ),
            opts=child,
        )
        self.stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=metadata(NAME),
            spec=_stateful_set_spec(args, labels, selector),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, service]),
        )
        # Airflow's own pods, in its namespace, are the only clients.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(NAME),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                pod_selector=k8s.meta.v1.LabelSelectorArgs()
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
                    )
                ],
            ),
            opts=child,
        )
        self.register_outputs({"host": self.host, "secretName": self.secret_name})


def _stateful_set_spec(
    args: MetadataDatabaseArgs, labels: dict[str, str], selector: dict[str, str]
) -> k8s.apps.v1.StatefulSetSpecArgs:
    ready = k8s.core.v1.ExecActionArgs(
        command=["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, "-d", DATABASE]
    )
    volumes = [
        # initdb and the server write only here: the socket directory and scratch space.
        k8s.core.v1.VolumeArgs(name="run", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
        k8s.core.v1.VolumeArgs(
            name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="256Mi")
        ),
    ]
    claims = None
    if args.storage_size:
        claims = [
            k8s.core.v1.PersistentVolumeClaimArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=labels),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"],
                    storage_class_name=args.storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                        requests={"storage": args.storage_size}
                    ),
                ),
            )
        ]
    else:
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="data", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="2Gi")
            )
        )
    container = k8s.core.v1.ContainerArgs(
        name="postgres",
        image=args.image,
        image_pull_policy=args.pull_policy,
        ports=[k8s.core.v1.ContainerPortArgs(name="postgres", container_port=PORT, protocol="TCP")],
        env=[
            k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value=USER),
            k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=DATABASE),
            k8s.core.v1.EnvVarArgs(
                name="POSTGRES_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=NAME, key=PASSWORD_KEY)
                ),
            ),
            # A subdirectory: a fresh volume's root may hold lost+found, which initdb refuses.
            k8s.core.v1.EnvVarArgs(name="PGDATA", value=f"{DATA_MOUNT}/pgdata"),
        ],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}
        ),
        liveness_probe=k8s.core.v1.ProbeArgs(
            exec_=ready, initial_delay_seconds=20, period_seconds=10, timeout_seconds=5
        ),
        readiness_probe=k8s.core.v1.ProbeArgs(
            exec_=ready, initial_delay_seconds=5, period_seconds=5, timeout_seconds=5
        ),
        security_context=restricted_container_security_context(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_MOUNT),
            k8s.core.v1.VolumeMountArgs(name="run", mount_path="/var/run/postgresql"),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ],
    )
    return single_pod_stateful_set_spec(
        service_name=NAME,
        selector=selector,
        labels=labels,
        uid=POSTGRES_UID,
        container=container,
        volumes=volumes,
        volume_claim_templates=claims,
    )
