"""Apache Airflow 3 from the official chart, with every secret it needs made by us.

Decisions worth knowing:

- Static keys. The chart would otherwise generate the fernet key, the `[api] secret_key` and
  the JWT secret itself, and regenerate some of them on upgrade (logging every user out and
  breaking task tokens). We derive all three from the seed and hand the chart one Secret.
- Database: our own PostgreSQL (see `metadata_db`), the chart's bundled one is off.
- Hooks: `helm.v3.Release` runs real Helm, which would run the migration and user-creation
  jobs as post-install hooks, but only after `--wait` saw every pod Ready, and the pods wait
  for the migration: a deadlock until the timeout. With `useHelmHooks: false` the jobs are
  ordinary resources that run alongside, which also keeps these values valid for
  template-style GitOps rendering (Argo CD, `helm template`).
- Secrets are files, never environment variables. Every secret Airflow needs is a file from
  a Secret volume under `/var/run/secrets/starling/`; the environment carries only paths.
  The chart's built-in secret variables (`enableBuiltInSecretEnvVars`, each a
  `valueFrom.secretKeyRef`) are all switched off, and Airflow reads the sensitive options
  through their `_CMD` variants (`cat <file>`): the metadata connection (sync and async), the
  fernet key, `[api] secret_key` and `[api_auth] jwt_secret`, and with Celery the broker URL.
  Only options Airflow marks sensitive honour `_CMD`; these all are.
- Connections come from one JSON file read by Airflow's `LocalFilesystemBackend` (`[secrets]
  backend`), not from `AIRFLOW_CONN_<ID>` variables: `kafka_default` (its extra is librdkafka
  config) and `starling_store` (a `redis://` URI with the store's seed-derived password). The
  broker CA, which Strimzi writes in the `starling` namespace, is copied into this namespace
  once Kafka is Ready.
- The metadata database is reached over TLS with `sslmode=verify-full` against our internal
  CA (see `metadata_db`); `PGSSLROOTCERT` names the CA for asyncpg, which has no URI
  parameter for it. The store (TLS only) is verified against the same CA file.
- CeleryExecutor: the chart's Redis is the broker, with the restricted security context
  (non-root uid 999, no capabilities, RuntimeDefault seccomp) the namespace demands, and its
  password and broker URL in our own seed-derived Secret. One secret env var remains there,
  inside the chart's Redis StatefulSet: `REDIS_PASSWORD` (`secretKeyRef`, hard-coded in the
  chart's template and passed to `redis-server --requirepass`); no value switches it off.
  No committed stack uses Celery.
- Network: the chart's own NetworkPolicies (`networkPolicies.enabled`) are all
  `policyTypes: [Ingress]` in its templates, so Airflow's pods may open connections out; the
  store's and Kafka's policies are what admit them (see `store.airflow_task_pods_peer`).

- Sign-in: no default account. The chart's create-user job (FAB's `airflow users create`,
  admin/admin by default) is off; Airflow 3's SimpleAuthManager, named explicitly, has one
  user, `starling-admin` (role admin), whose password derives from the seed and lives in a
  Secret. That manager opens its passwords file for appending and locks it, which a Secret
  volume (always read-only) refuses, so an init container of the api-server copies the file
  into an emptyDir; the manager then finds every user it knows and writes nothing, and never
  prints a password. A pod annotation derived from the seed rolls the pods when the seed
  (and so the password) rotates.

Chart value keys were checked against the chart 1.22 documentation where it could be read
(`fernetKeySecretName`, `apiSecretKeySecretName`, `jwtSecretName`, `data.metadataSecretName`,
`secret`, `volumes`, `volumeMounts`, `securityContexts`, `migrateDatabaseJob.useHelmHooks`,
`createUserJob.useHelmHooks`, `dags.gitSync.*`); `dags.gitSync.securityContexts.container` is
from older chart versions and is marked below as unverified for 1.22.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from starling_infra import meta, metadata_db
from starling_infra.config import AirflowConfig, split_image
from starling_infra.metadata_db import MetadataDatabase, MetadataDatabaseArgs
from starling_infra.passwords import Purposes, derive_fernet_key, derive_password

COMPONENT = "airflow"
KEYS_SECRET = "starling-airflow-keys"  # not a name the chart renders itself
# The connection ids the DAGs and operators use: KAFKA_CONN_ID and STORE_CONN_ID of
# operators/starling_operators/settings.py (the infra depends on `starling` only, not on the
# operators package; tests/unit/infra/test_program.py checks that the names agree). Airflow
# reads connection <id> from the environment variable AIRFLOW_CONN_<ID>.
KAFKA_CONN_ID = "kafka_default"
STORE_CONN_ID = "starling_store"
# The environment-variable names Airflow would use for these ids (kept to check the ids
# against the operators' settings; the connections themselves come from a file).
KAFKA_CONNECTION_ENV = f"AIRFLOW_CONN_{KAFKA_CONN_ID.upper()}"
STORE_CONNECTION_ENV = f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}"
SECRETS_ROOT = "/var/run/secrets/starling"
CONNECTIONS_SECRET = "starling-airflow-connections"
CONNECTIONS_KEY = "connections.json"
CONNECTIONS_DIR = f"{SECRETS_ROOT}/airflow-connections"
LOCAL_FILESYSTEM_BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
KEYS_DIR = f"{SECRETS_ROOT}/airflow-keys"
FERNET_KEY = "fernet-key"
API_SECRET_KEY = "api-secret-key"
JWT_SECRET_KEY = "jwt-secret"
DATABASE_DIR = f"{SECRETS_ROOT}/airflow-db"
# CeleryExecutor only: the chart's Redis takes `password` from this Secret, Airflow the URL.
BROKER_SECRET = "starling-airflow-broker"
BROKER_DIR = f"{SECRETS_ROOT}/airflow-broker"
BROKER_URL_KEY = "connection"
BROKER_PASSWORD_KEY = "password"
REDIS_UID = 999  # the `redis` user of the official redis image the chart runs
# Every variable the chart 1.22 can render as `valueFrom.secretKeyRef` under
# `enableBuiltInSecretEnvVars`: all off, the files replace them.
CHART_SECRET_ENV_VARS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW_CONN_AIRFLOW_DB",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__WEBSERVER__SECRET_KEY",
    "AIRFLOW__CELERY__CELERY_RESULT_BACKEND",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__ELASTICSEARCH__HOST",
    "AIRFLOW__ELASTICSEARCH__ELASTICSEARCH_HOST",
    "AIRFLOW__OPENSEARCH__HOST",
)
KAFKA_CA_SECRET = "starling-kafka-cluster-ca"
KAFKA_CA_DIR = "/opt/airflow/secrets/kafka-ca"
KAFKA_PRINCIPAL = "airflow"
AIRFLOW_UID = 50000  # the `airflow` user of apache/airflow images (group 0 by design)
# The UI's one account (SimpleAuthManager role `admin`); its password derives from the seed.
UI_ADMIN_USER = "starling-admin"
UI_ADMIN_SECRET = "starling-airflow-ui-admin"
UI_PASSWORDS_KEY = "passwords.json"
UI_SECRET_DIR = "/opt/airflow/secrets/ui-admin"
UI_AUTH_DIR = "/opt/airflow/ui-auth"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
# Changes whenever the seed does, so the pods restart and read the new UI password.
CREDENTIALS_ANNOTATION = "starling.dev/credentials-generation"


def kafka_connection(password: str) -> str:
    """The `kafka_default` connection as Airflow reads it from the environment (JSON form);
    `extra` goes to librdkafka as is."""
    return json.dumps(
        {
            "conn_type": "kafka",
            "extra": {
                "bootstrap.servers": meta.KAFKA_BOOTSTRAP,
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": f"starling-{KAFKA_PRINCIPAL}",
                "sasl.password": password,
                "ssl.ca.location": f"{KAFKA_CA_DIR}/ca.crt",
                # The ACL grants the `starling-airflow-` group prefix (separator included):
                # this is the login watcher's group; the operators name their own.
                "group.id": f"starling-{KAFKA_PRINCIPAL}-login-watcher",
                # Offsets are committed by the operators after the work is done, and by the
                # login watcher's shared-stream trigger only after the asset event is stored
                # (the trigger refuses to start unless this is false).
                "enable.auto.commit": False,
                # Where a group with no committed offset starts: the login watcher's group is
                # new at the first deploy, and "earliest" would turn the topic's whole
                # retention of logins into DAG runs. Our operators read intervals by timestamp
                # (reset policy "error") and otherwise only commit or look up offsets, so
                # this decides where the watcher starts and nothing else.
                "auto.offset.reset": "latest",
            },
        },
        sort_keys=True,
    )


def connections_file(kafka_password: str, store_uri: str) -> str:
    """The file `LocalFilesystemBackend` reads: connection id to a JSON object (Kafka, its
    extra as `extra_dejson`) or a URI (the store)."""
    kafka = json.loads(kafka_connection(kafka_password))
    return json.dumps(
        {
            KAFKA_CONN_ID: {"conn_type": kafka["conn_type"], "extra_dejson": kafka["extra"]},
            STORE_CONN_ID: store_uri,
        },
        sort_keys=True,
    )


def broker_url(password: str, namespace: str = meta.AIRFLOW_NAMESPACE) -> str:
    """Celery's broker: the chart's Redis Service in Airflow's namespace."""
    host = f"{meta.AIRFLOW_RELEASE}-redis.{namespace}.svc"
    return f"redis://:{password}@{host}:6379/0"


def _read_file(path: str) -> str:
    # Airflow runs `_CMD` values without a shell; `cat` prints the file and nothing else.
    return f"cat {path}"


def secret_file_env(celery: bool) -> list[dict[str, str]]:
    """Plain env entries for every Airflow container: paths and commands, never a secret."""
    commands = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": f"{DATABASE_DIR}/{metadata_db.CONNECTION_KEY}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD": (
            f"{DATABASE_DIR}/{metadata_db.ASYNC_CONNECTION_KEY}"
        ),
        "AIRFLOW__CORE__FERNET_KEY_CMD": f"{KEYS_DIR}/{FERNET_KEY}",
        "AIRFLOW__API__SECRET_KEY_CMD": f"{KEYS_DIR}/{API_SECRET_KEY}",
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD": f"{KEYS_DIR}/{JWT_SECRET_KEY}",
    }
    if celery:
        commands["AIRFLOW__CELERY__BROKER_URL_CMD"] = f"{BROKER_DIR}/{BROKER_URL_KEY}"
    env = [{"name": name, "value": _read_file(path)} for name, path in commands.items()]
    # asyncpg (Airflow's async engine) has no URI parameter for the CA; libpq honours it too.
    env.append({"name": "PGSSLROOTCERT", "value": metadata_db.CLIENT_CA_FILE})
    return env


def _secret_volume(name: str, secret: str, keys: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": key} for key in keys],
            # Group-readable: Airflow runs as uid 50000 in group 0, the pods' fsGroup.
            "defaultMode": 0o440,
        },
    }


def secret_volumes(database_secret: str, celery: bool) -> tuple[list[Any], list[Any]]:
    """Volumes and mounts every Airflow container gets (the chart's `volumes`/`volumeMounts`)."""
    volumes: list[Any] = [
        {"name": "kafka-ca", "secret": {"secretName": KAFKA_CA_SECRET, "defaultMode": 0o440}},
        _secret_volume("airflow-keys", KEYS_SECRET, [FERNET_KEY, API_SECRET_KEY, JWT_SECRET_KEY]),
        _secret_volume(
            "airflow-db",
            database_secret,
            [metadata_db.CONNECTION_KEY, metadata_db.ASYNC_CONNECTION_KEY],
        ),
        _secret_volume("airflow-connections", CONNECTIONS_SECRET, [CONNECTIONS_KEY]),
        {
            "name": "internal-ca",
            "configMap": {"name": metadata_db.CA_CONFIG_MAP, "defaultMode": 0o444},
        },
    ]
    mounts: list[Any] = [
        {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        {"name": "airflow-keys", "mountPath": KEYS_DIR, "readOnly": True},
        {"name": "airflow-db", "mountPath": DATABASE_DIR, "readOnly": True},
        {"name": "airflow-connections", "mountPath": CONNECTIONS_DIR, "readOnly": True},
        {"name": "internal-ca", "mountPath": metadata_db.CLIENT_CA_DIR, "readOnly": True},
    ]
    if celery:
        volumes.append(_secret_volume("airflow-broker", BROKER_SECRET, [BROKER_URL_KEY]))
        mounts.append({"name": "airflow-broker", "mountPath": BROKER_DIR, "readOnly": True})
    return volumes, mounts


def redis_values() -> dict[str, Any]:
    """The chart's Redis (Celery broker) as the namespace's `restricted` policy admits it;
    its password comes from our Secret, not one the chart generates on each install."""
    return {
        "enabled": True,
        "passwordSecretName": BROKER_SECRET,
        "uid": REDIS_UID,
        "securityContexts": {
            "pod": {
                "runAsNonRoot": True,
                "runAsUser": REDIS_UID,
                "runAsGroup": REDIS_UID,
                "fsGroup": REDIS_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "container": _restricted_container_context() | {"readOnlyRootFilesystem": True},
        },
    }


def store_connection(password: str, host: str, port: int) -> str:
    """The `starling_store` connection in URI form: no login, the password URL-quoted,
    database 0 as the schema, and TLS verified against the internal CA (the query becomes
    the extra the operators' `store_client` reads: `ssl`, `ssl_ca_certs`; redis-py then
    checks the chain and the host name)."""
    quoted = urllib.parse.quote(password, safe="")
    query = urllib.parse.urlencode(
        {"ssl": "true", "ssl_ca_certs": metadata_db.CLIENT_CA_FILE}, safe="/"
    )
    return f"redis://:{quoted}@{host}:{port}/0?{query}"


def ui_passwords_file(password: str) -> str:
    """SimpleAuthManager's passwords file: `{"<user>": "<password>"}`."""
    return json.dumps({UI_ADMIN_USER: password})


def _ui_sign_in_values(image: str, pull_policy: str) -> dict[str, Any]:
    """Chart values for the UI's sign-in (see the module docstring). The api-server keys
    `extraInitContainers`, `extraVolumes` and `extraVolumeMounts` are unverified against the
    chart 1.22 schema (seen in use with chart 1.20); `createUserJob.enabled` is from
    apache/airflow#56057 (chart 1.19) and replaced `webserver.defaultUser.enabled`."""
    return {
        "apiServer": {
            "extraVolumes": [
                {
                    "name": "ui-admin",
                    "secret": {
                        "secretName": UI_ADMIN_SECRET,
                        "items": [{"key": UI_PASSWORDS_KEY, "path": UI_PASSWORDS_KEY}],
                        "defaultMode": 0o440,
                    },
                },
                {"name": "ui-auth", "emptyDir": {"sizeLimit": "1Mi"}},
            ],
            "extraVolumeMounts": [{"name": "ui-auth", "mountPath": UI_AUTH_DIR}],
            "extraInitContainers": [
                {
                    "name": "ui-passwords",
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    "command": [
                        "cp",
                        f"{UI_SECRET_DIR}/{UI_PASSWORDS_KEY}",
                        f"{UI_AUTH_DIR}/{UI_PASSWORDS_KEY}",
                    ],
                    "securityContext": _restricted_container_context(),
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"memory": "64Mi"},
                    },
                    "volumeMounts": [
                        {"name": "ui-admin", "mountPath": UI_SECRET_DIR, "readOnly": True},
                        {"name": "ui-auth", "mountPath": UI_AUTH_DIR},
                    ],
                }
            ],
        },
        # No admin/admin: the chart's default user is FAB's, and nothing here runs FAB.
        "createUserJob": {"useHelmHooks": False, "enabled": False},
    }


def _restricted_pod_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": AIRFLOW_UID,
        "runAsGroup": 0,
        "fsGroup": 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_container_context() -> dict[str, Any]:
    # No readOnlyRootFilesystem: Airflow writes logs and caches under AIRFLOW_HOME.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def chart_values(
    settings: AirflowConfig, image: str, pull_policy: str, database_secret: str
) -> dict[str, Any]:
    repository, tag = split_image(image)
    celery = "CeleryExecutor" in settings.executor
    git_sync = settings.dags == "gitSync"
    volumes, volume_mounts = secret_volumes(database_secret, celery)
    values: dict[str, Any] = {
        "airflowVersion": meta.AIRFLOW_VERSION,
        "defaultAirflowRepository": repository,
        "defaultAirflowTag": tag,
        "images": {"airflow": {"repository": repository, "tag": tag, "pullPolicy": pull_policy}},
        "executor": settings.executor,
        "labels": {"app.kubernetes.io/part-of": meta.PART_OF},
        # The namespace enforces "restricted"; these apply to every Airflow container.
        "securityContexts": {
            "pod": _restricted_pod_context(),
            "containers": _restricted_container_context(),
        },
        # Named so the chart generates none of these Secrets; read as files (see above).
        "fernetKeySecretName": KEYS_SECRET,
        "apiSecretKeySecretName": KEYS_SECRET,
        "jwtSecretName": KEYS_SECRET,
        "data": {"metadataSecretName": database_secret},
        "postgresql": {"enabled": False},
        "pgbouncer": {"enabled": False},
        # Redis is the Celery broker; no other executor needs it.
        "redis": redis_values() if celery else {"enabled": False},
        # The statsd exporter's own security context is not ours to set; off until checked.
        "statsd": {"enabled": False},
        "networkPolicies": {"enabled": True},
        "migrateDatabaseJob": {"useHelmHooks": False},
        # No secret in any container's environment: files instead (see the module docstring).
        "enableBuiltInSecretEnvVars": dict.fromkeys(CHART_SECRET_ENV_VARS, False),
        "secret": [],
        "env": secret_file_env(celery),
        "volumes": volumes,
        "volumeMounts": volume_mounts,
        # Unpaused at creation: the pipeline runs after `pulumi up` (Airflow's default would
        # leave every DAG, the login watcher's included, waiting for a click).
        "config": {
            "core": {
                "load_examples": "False",
                "dags_are_paused_at_creation": "False",
                # Named rather than inherited, with its one user and sign-in required.
                "auth_manager": SIMPLE_AUTH_MANAGER,
                "simple_auth_manager_users": f"{UI_ADMIN_USER}:admin",
                "simple_auth_manager_all_admins": "False",
                "simple_auth_manager_passwords_file": f"{UI_AUTH_DIR}/{UI_PASSWORDS_KEY}",
            },
            "secrets": {
                "backend": LOCAL_FILESYSTEM_BACKEND,
                "backend_kwargs": json.dumps(
                    {"connections_file_path": f"{CONNECTIONS_DIR}/{CONNECTIONS_KEY}"}
                ),
            },
        },
        "dags": {
            "persistence": {"enabled": False},
            "gitSync": {"enabled": git_sync},
        },
    }
    values |= _ui_sign_in_values(image, pull_policy)
    if celery:
        values["data"]["brokerUrlSecretName"] = BROKER_SECRET
    if git_sync:
        values["dags"]["gitSync"] |= {
            "repo": settings.git_sync_repo,
            "branch": settings.git_sync_branch,
            "subPath": settings.git_sync_sub_path,
            # Unverified for chart 1.22 (present in earlier charts): git-sync's own context.
            "securityContexts": {"container": _restricted_container_context()},
        }
    return values


@dataclass(frozen=True)
class AirflowArgs:
    settings: AirflowConfig
    image: str
    postgres_image: str
    pull_policy: str
    namespace: pulumi.Input[str]
    secret_seed: pulumi.Output[str]
    kafka_password: pulumi.Output[str]
    # The Kafka resource: the CA copy reads Strimzi's CA Secret once Kafka is Ready.
    kafka: pulumi.CustomResource
    kafka_namespace: str
    # The store (a Redis-protocol Valkey): its Service address and seed-derived password.
    store_host: str
    store_port: int
    store_password: pulumi.Output[str]


class Airflow(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    database: MetadataDatabase
    url: str
    port_forward: str
    ui_user: str
    ui_password_command: str

    def __init__(
        self, name: str, args: AirflowArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:airflow:Airflow", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        def metadata(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name,
                namespace=args.namespace,
                labels=meta.labels(meta.AIRFLOW_RELEASE, COMPONENT),
            )

        self.database = MetadataDatabase(
            f"{name}-db",
            MetadataDatabaseArgs(
                image=args.postgres_image,
                pull_policy=args.pull_policy,
                namespace=args.namespace,
                secret_seed=args.secret_seed,
                storage_size=settings.database_size,
                storage_class=settings.storage_class,
            ),
            opts=child,
        )

        keys = k8s.core.v1.Secret(
            f"{name}-keys",
            metadata=metadata(KEYS_SECRET),
            type="Opaque",
            string_data={
                FERNET_KEY: derive_fernet_key(args.secret_seed, Purposes.AIRFLOW_FERNET),
                API_SECRET_KEY: derive_password(args.secret_seed, Purposes.AIRFLOW_API_SECRET),
                JWT_SECRET_KEY: derive_password(args.secret_seed, Purposes.AIRFLOW_JWT_SECRET),
            },
            opts=child,
        )
        ui_password = derive_password(args.secret_seed, Purposes.AIRFLOW_UI_ADMIN)
        passwords_file: pulumi.Output[str] = pulumi.Output.secret(
            ui_password.apply(ui_passwords_file)
        )
        ui_admin = k8s.core.v1.Secret(
            f"{name}-ui-admin",
            metadata=metadata(UI_ADMIN_SECRET),
            type="Opaque",
            string_data={
                "password": ui_password,
                UI_PASSWORDS_KEY: passwords_file,
            },
            opts=child,
        )
        # Secret already (derived from the seed); marked again so it stays one if that changes.
        connections_json: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(args.kafka_password, args.store_password).apply(
                lambda passwords: connections_file(
                    passwords[0],
                    store_connection(passwords[1], args.store_host, args.store_port),
                )
            )
        )
        connections = k8s.core.v1.Secret(
            f"{name}-connections",
            metadata=metadata(CONNECTIONS_SECRET),
            type="Opaque",
            string_data={CONNECTIONS_KEY: connections_json},
            opts=child,
        )
        release_inputs: list[pulumi.Resource] = []
        if "CeleryExecutor" in settings.executor:
            broker_password = derive_password(args.secret_seed, Purposes.AIRFLOW_BROKER)
            release_inputs.append(
                k8s.core.v1.Secret(
                    f"{name}-broker",
                    metadata=metadata(BROKER_SECRET),
                    type="Opaque",
                    string_data={
                        BROKER_PASSWORD_KEY: broker_password,
                        BROKER_URL_KEY: broker_password.apply(broker_url),
                    },
                    opts=child,
                )
            )

        # Strimzi writes the CA only after it reconciled the cluster; the id is derived from the
        # Kafka resource so the read happens after it (which waits for Ready) and is skipped
        # in a preview where Kafka does not exist yet.
        strimzi_ca = k8s.core.v1.Secret.get(
            f"{name}-strimzi-cluster-ca",
            args.kafka.id.apply(lambda _: f"{args.kafka_namespace}/{meta.KAFKA_CLUSTER_CA_SECRET}"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.kafka]),
        )
        ca_copy = k8s.core.v1.Secret(
            f"{name}-kafka-ca",
            metadata=metadata(KAFKA_CA_SECRET),
            type="Opaque",
            data={"ca.crt": strimzi_ca.data.apply(lambda data: data["ca.crt"])},
            opts=child,
        )

        values = chart_values(settings, args.image, args.pull_policy, self.database.secret_name)
        # A one-way derivation of the seed under a label of its own: it says nothing about any
        # password, so it may stay visible in previews (the values hold no secret).
        generation = pulumi.Output.unsecret(
            derive_password(args.secret_seed, Purposes.CREDENTIALS_GENERATION)
        ).apply(lambda value: value[:16])
        values["airflowPodAnnotations"] = {CREDENTIALS_ANNOTATION: generation}

        repository_opts = k8s.helm.v3.RepositoryOptsArgs(repo=meta.AIRFLOW_CHART_REPO)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=meta.AIRFLOW_RELEASE,
                chart=meta.AIRFLOW_CHART,
                version=meta.AIRFLOW_CHART_VERSION,
                repository_opts=repository_opts,
                namespace=args.namespace,
                values=values,
                # First installs pull several images and migrate the database.
                timeout=1200,
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    self.database.stateful_set,
                    keys,
                    ui_admin,
                    connections,
                    ca_copy,
                    *release_inputs,
                ],
            ),
        )

        service = f"{meta.AIRFLOW_RELEASE}-api-server"
        self.url = f"http://{service}.{meta.AIRFLOW_NAMESPACE}.svc:{meta.AIRFLOW_API_PORT}"
        self.port_forward = (
            f"kubectl -n {meta.AIRFLOW_NAMESPACE} port-forward svc/{service} "
            f"{meta.AIRFLOW_API_PORT}:{meta.AIRFLOW_API_PORT}"
        )
        self.ui_user = UI_ADMIN_USER
        # Prints the password from the cluster; the password itself is never an output.
        self.ui_password_command = (
            f"kubectl -n {meta.AIRFLOW_NAMESPACE} get secret {UI_ADMIN_SECRET} "
            "-o jsonpath='{.data.password}' | base64 -d"
        )
        self.register_outputs(
            {
                "url": self.url,
                "portForward": self.port_forward,
                "uiUser": self.ui_user,
                "uiPasswordCommand": self.ui_password_command,
            }
        )
