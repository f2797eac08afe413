"""Airflow's metadata database: one PostgreSQL we run ourselves.

The chart's bundled PostgreSQL pins a Bitnami image that was withdrawn upstream (installs end
in ImagePullBackOff) and does not meet the restricted profile our namespace enforces. The
official `postgres` image does, running as its `postgres` user with a read-only root.
Production should point Airflow at a managed database instead; this one is for a cluster
that has nothing else.

Secrets and TLS:

- The password reaches Postgres as a file (`POSTGRES_PASSWORD_FILE`, which the official image
  reads at initdb), never as an environment variable.
- The server speaks TLS only (`ssl=on` and a `pg_hba.conf` with `hostssl` lines alone, so a
  plain-text TCP login is refused), with a certificate from the program's internal CA
  (`tls.py`) for the Service's names. Postgres refuses a key file that its user cannot read or
  that others can: a Secret volume's files are owned by root, so the key is mode 0440 with the
  pod's `fsGroup` (the postgres group) as its group, which is what Postgres accepts for a
  root-owned key (it rejects group write or any world access).
- Airflow's connection strings (sync `psycopg2` and async `asyncpg`) verify the chain and the
  host name (`sslmode=verify-full` / `ssl=verify-full`) against the CA, which Airflow's pods
  mount from a ConfigMap (the CA certificate is public; the CA key never leaves the program).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from starling_infra import meta, tls
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
# The key the Airflow chart reads from `data.metadataSecretName`; Airflow reads the file.
CONNECTION_KEY = "connection"
# Airflow 3's async engine (asyncpg) takes `ssl=`, not libpq's `sslmode=`/`sslrootcert=`.
ASYNC_CONNECTION_KEY = "connection-async"
DATA_MOUNT = "/var/lib/postgresql/data"
# Headless: the StatefulSet's governing Service, for the pod's stable DNS name.
HEADLESS_SERVICE = f"{NAME}-headless"
TLS_SECRET = f"{NAME}-tls"
TLS_PURPOSE = "airflow-metadata-db"
# The internal CA's certificate in Airflow's namespace: Airflow's pods trust it for this
# database and for the store (one CA, derived from the seed, signs both servers).
CA_CONFIG_MAP = "starling-internal-ca"
HBA_CONFIG_MAP = f"{NAME}-hba"
HBA_KEY = "pg_hba.conf"
# Mount points inside the Postgres container.
SECRET_DIR = "/var/run/secrets/starling/airflow-db"
TLS_DIR = "/var/run/secrets/starling/airflow-db-tls"
HBA_DIR = "/etc/starling/postgres"
# Where Airflow's pods mount the CA (ConfigMap `CA_CONFIG_MAP`); the connection names it.
CLIENT_CA_DIR = "/var/run/secrets/starling/internal-ca"
CLIENT_CA_FILE = f"{CLIENT_CA_DIR}/{tls.CA_CERT_KEY}"
# Socket logins inside the pod (initdb, the image's entrypoint) stay as the image sets them;
# every TCP login must be TLS with a SCRAM password.
HBA = "local all all trust\nhostssl all all all scram-sha-256\n"


def server_names(namespace: str = meta.AIRFLOW_NAMESPACE) -> list[str]:
    """Every name a client may use for the server: the certificate covers them all."""
    return [
        NAME,
        f"{NAME}.{namespace}",
        f"{NAME}.{namespace}.svc",
        f"{NAME}.{namespace}.svc.cluster.local",
    ]


def connection_uri(password: str, host: str) -> str:
    """Airflow's sync connection: TLS with the chain and the host name verified."""
    query = urllib.parse.urlencode(
        {"sslmode": "verify-full", "sslrootcert": CLIENT_CA_FILE}, safe="/"
    )
    return f"postgresql://{USER}:{password}@{host}:{PORT}/{DATABASE}?{query}"


def async_connection_uri(password: str, host: str) -> str:
    """The asyncpg form: `ssl=verify-full`; asyncpg takes the CA from `PGSSLROOTCERT`, which
    the Airflow chart values set to `CLIENT_CA_FILE`."""
    return f"postgresql+asyncpg://{USER}:{password}@{host}:{PORT}/{DATABASE}?ssl=verify-full"


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
    ca_config_map: str
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
        self.ca_config_map = CA_CONFIG_MAP

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
                CONNECTION_KEY: password.apply(lambda value: connection_uri(value, self.host)),
                ASYNC_CONNECTION_KEY: password.apply(
                    lambda value: async_connection_uri(value, self.host)
                ),
            },
            opts=child,
        )
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=metadata(TLS_SECRET),
            type="kubernetes.io/tls",
            string_data=tls.tls_secret_data(args.secret_seed, TLS_PURPOSE, server_names()),
            opts=child,
        )
        # The CA certificate is public (clients need it, nothing else): a ConfigMap.
        k8s.core.v1.ConfigMap(
            f"{name}-ca",
            metadata=metadata(CA_CONFIG_MAP),
            data={tls.CA_CERT_KEY: pulumi.Output.unsecret(tls.ca_certificate(args.secret_seed))},
            opts=child,
        )
        hba = k8s.core.v1.ConfigMap(
            f"{name}-hba",
            metadata=metadata(HBA_CONFIG_MAP),
            data={HBA_KEY: HBA},
            opts=child,
        )
        headless = k8s.core.v1.Service(
            f"{name}-headless-service",
            metadata=metadata(HEADLESS_SERVICE),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="postgres", port=PORT, target_port="postgres", protocol="TCP"
                    )
                ],
            ),
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
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[secret, tls_secret, hba, service, headless]
            ),
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
        k8s.core.v1.VolumeArgs(
            name="password",
            secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=NAME,
                items=[k8s.core.v1.KeyToPathArgs(key=PASSWORD_KEY, path=PASSWORD_KEY)],
                default_mode=0o440,
            ),
        ),
        # Root-owned files, group = the pod's fsGroup (postgres): 0440 is the mode Postgres
        # accepts for a root-owned key (no group write, no world access).
        k8s.core.v1.VolumeArgs(
            name="tls",
            secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=TLS_SECRET,
                items=[
                    k8s.core.v1.KeyToPathArgs(key=tls.TLS_CERT_KEY, path=tls.TLS_CERT_KEY),
                    k8s.core.v1.KeyToPathArgs(key=tls.TLS_KEY_KEY, path=tls.TLS_KEY_KEY),
                ],
                default_mode=0o440,
            ),
        ),
        k8s.core.v1.VolumeArgs(
            name="hba",
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=HBA_CONFIG_MAP, default_mode=0o444
            ),
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
        # The image's entrypoint passes these to initdb's temporary server and the real one.
        args=[
            "postgres",
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={TLS_DIR}/{tls.TLS_CERT_KEY}",
            "-c",
            f"ssl_key_file={TLS_DIR}/{tls.TLS_KEY_KEY}",
            "-c",
            "ssl_min_protocol_version=TLSv1.2",
            "-c",
            f"hba_file={HBA_DIR}/{HBA_KEY}",
        ],
        ports=[k8s.core.v1.ContainerPortArgs(name="postgres", container_port=PORT, protocol="TCP")],
        env=[
            k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value=USER),
            k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=DATABASE),
            # A path, not the password: the image's entrypoint reads the file.
            k8s.core.v1.EnvVarArgs(
                name="POSTGRES_PASSWORD_FILE", value=f"{SECRET_DIR}/{PASSWORD_KEY}"
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
            k8s.core.v1.VolumeMountArgs(name="password", mount_path=SECRET_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="hba", mount_path=HBA_DIR, read_only=True),
        ],
    )
    return single_pod_stateful_set_spec(
        service_name=HEADLESS_SERVICE,
        selector=selector,
        labels=labels,
        uid=POSTGRES_UID,
        container=container,
        volumes=volumes,
        volume_claim_templates=claims,
    )
