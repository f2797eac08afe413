"""The stack configuration: one validated, frozen model, loaded once from Pulumi config.

Keys are flat and dotted (`starling:kafka.brokers`), so `Pulumi.yaml` can declare a type for
each of them and `pulumi config set kafka.brokers 3` works without `--path`. Structured values
(`pulumi config set --path kafka.brokers 3`, which stores `starling:kafka: {brokers: 3}`) are
accepted too and mean the same thing.

Every default lives in this module. Bad config fails here, before the program creates any
resource, with a message that names the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import pulumi
import pulumi.runtime.config as pulumi_config
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from starling.topics import Replication
from starling_infra.k8s_values import (
    Floor,
    check_label_key,
    check_storage_class,
    parse_image,
    parse_quantity,
)
from starling_infra.meta import REPO_ROOT

PROJECT = "starling"
SEED_KEY = "secretSeed"
SEED_COMMAND = 'pulumi config set --secret starling:secretSeed "$(openssl rand -hex 32)"'
MIN_SEED_LENGTH = 32

ALLOWED_EXECUTORS = ("LocalExecutor", "CeleryExecutor", "KubernetesExecutor")
# Where clients reach the built-in identity service on kind: `identityPortForward`.
DEV_IDENTITY_URL = "http://localhost:8081"


class StarlingConfigError(pulumi.RunError):
    """Bad stack configuration. A `RunError` so the CLI prints the message, not a traceback."""


# --- value types --------------------------------------------------------------------------

# Kubernetes resource quantities (`512Mi`, `2Gi`, `250m`, `1e9`), each with the smallest
# value that can actually run; the reason is part of the error message.
_KAFKA_DISK = Floor(
    "1Gi",
    "Kafka writes its logs in segments of 1GiB by default (log.segment.bytes, and "
    "metadata.log.segment.bytes for the KRaft log), so a smaller volume fills before the first "
    "segment can roll or be deleted",
)
BROKER_MEMORY = Floor(
    "1Gi",
    "Strimzi gives the broker JVM a heap of about half the container limit; below 1Gi the heap "
    "cannot hold the TLS/SCRAM listener, the metadata image and the fetch buffers of the "
    "catalog's partitions, and the broker dies of OutOfMemoryError or is OOM-killed",
)
CONTROLLER_MEMORY = Floor(
    "512Mi",
    "a KRaft controller keeps the whole metadata image in its JVM heap (about half the limit) "
    "next to the JVM's own overhead of some 200MiB",
)
_JVM_CPU = Floor(
    "100m",
    "below a tenth of a core the JVM takes minutes to start and misses the startup and "
    "liveness probes Strimzi sets, so the pod restarts forever",
)
STORE_MEMORY = Floor(
    "64Mi",
    "Valkey itself takes some 10MiB and forks for every snapshot; below 64MiB the first keys "
    "already hit the memory limit",
)
_STORE_CPU = Floor(
    "50m", "the store answers every service request; below 50m it is throttled into timeouts"
)
_STORE_DISK = Floor("256Mi", "the volume holds the store's snapshot and append-only file")
_DATABASE_DISK = Floor(
    "1Gi",
    "PostgreSQL's own files, write-ahead log (1GiB by default, max_wal_size) and Airflow's "
    "metadata need at least that",
)

KafkaDisk = Annotated[str, AfterValidator(_KAFKA_DISK.check)]
BrokerMemory = Annotated[str, AfterValidator(BROKER_MEMORY.check)]
ControllerMemory = Annotated[str, AfterValidator(CONTROLLER_MEMORY.check)]
JvmCpu = Annotated[str, AfterValidator(_JVM_CPU.check)]
StoreMemory = Annotated[str, AfterValidator(STORE_MEMORY.check)]
StoreCpu = Annotated[str, AfterValidator(_STORE_CPU.check)]
StoreDisk = Annotated[str, AfterValidator(_STORE_DISK.check)]
DatabaseDisk = Annotated[str, AfterValidator(_DATABASE_DISK.check)]
StorageClassName = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(check_storage_class)
]
LabelKey = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(check_label_key)]


def _check_image(ref: str) -> str:
    parse_image(ref)
    return ref


ImageRef = Annotated[str, AfterValidator(_check_image)]


def _check_executor(value: str) -> str:
    names = [part.strip() for part in value.split(",")]
    unknown = [name for name in names if name not in ALLOWED_EXECUTORS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"unknown executor {value!r}; allowed: {', '.join(ALLOWED_EXECUTORS)}, or a "
            "comma-separated combination of them without repeats "
            "(e.g. 'LocalExecutor,KubernetesExecutor')"
        )
    return ",".join(names)


Executor = Annotated[str, AfterValidator(_check_executor)]


def _check_seed(seed: SecretStr) -> SecretStr:
    # The message must never contain the value.
    if len(seed.get_secret_value()) < MIN_SEED_LENGTH:
        raise ValueError(
            f"must be at least {MIN_SEED_LENGTH} characters (64 hex characters recommended); "
            f"set a new one with: {SEED_COMMAND}"
        )
    return seed


SeedStr = Annotated[SecretStr, AfterValidator(_check_seed)]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not carry a query or fragment, got {value!r}")
    return value


HttpUrl = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_check_url)]


def _check_cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip()))
    except ValueError:
        raise ValueError(
            f"expected a CIDR such as 10.0.0.0/8 or fd00::/8 (no host bits set), got {value!r}"
        ) from None


Cidr = Annotated[str, AfterValidator(_check_cidr)]
# A Kubernetes namespace name (RFC 1123 label).
NamespaceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
# Key ids of the built-in issuer's signing keys (the identity service accepts the same).
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def split_image(ref: str) -> tuple[str, str]:
    """`repo/name:tag` -> (`repo/name`, `tag`), for charts that compose `repository:tag`.

    A digest stays with the tag (`tag@sha256:...`), so the composed reference is still
    pinned; the config refuses digest-only refs for the images that go through a chart."""
    image = parse_image(ref)
    if image.tag is None:
        raise ValueError(f"{ref!r} has no tag; a chart needs 'repository:tag[@sha256:...]'")
    return image.repository, image.tag + (f"@{image.digest}" if image.digest else "")


# --- the model ----------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


class StrimziConfig(_Section):
    install_operator: bool = Field(
        default=True,
        description="Install the Strimzi Cluster Operator (Helm chart, pinned) into the "
        "`strimzi` namespace. Off only where something else runs it, or nothing has to "
        "reconcile (an API-server-only CI cluster).",
    )
    crds_from: Literal["chart", "directory"] = Field(
        default="chart",
        description="Where the Strimzi CRDs come from: `chart` (the operator chart's `crds/`) "
        "or `directory` (the YAML files in `strimzi.crdsDirectory`, applied by Pulumi).",
    )
    crds_directory: str = Field(
        default="../shared/strimzi-crds/1.2.0",
        description="Directory of Strimzi CRD YAMLs for `crdsFrom: directory`, relative to "
        "the repository root.",
    )

    @property
    def crds_path(self) -> Path:
        return (REPO_ROOT / self.crds_directory).resolve()

    @model_validator(mode="after")
    def _crds_directory_exists(self) -> Self:
        if self.crds_from == "directory" and not any(self.crds_path.glob("*.yaml")):
            raise ValueError(
                f"starling:strimzi.crdsDirectory ({self.crds_directory!r}, resolved to "
                f"{self.crds_path}) holds no *.yaml CRD files; crdsFrom 'directory' needs them"
            )
        return self


class KafkaConfig(_Section):
    brokers: int = Field(default=1, ge=1, description="Number of Kafka brokers.")
    controllers: int = Field(
        default=0,
        ge=0,
        description="Number of dedicated KRaft controllers; 0 runs one dual-role pool whose "
        "brokers are also the controllers (fine for kind, not for production).",
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="default.replication.factor and the internal topics' RF; unset means "
        "min(3, brokers).",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the cluster, every catalog topic and the "
        "transaction-state log; unset means max(1, min(2, RF - 1)). With 2 or more brokers it "
        "must be at most RF - 1, so a rolling restart (one broker down) never fails acks=all "
        "writes or offset commits.",
    )
    default_partitions: int = Field(
        default=3,
        ge=1,
        description="num.partitions for topics created outside the catalog (automatic "
        "creation is disabled, so only tools that create topics explicitly).",
    )
    storage_type: Literal["ephemeral", "persistent"] = Field(
        default="ephemeral",
        description="Broker and controller log storage: `ephemeral` (emptyDir, lost with the "
        "pod) or `persistent` (a PersistentVolumeClaim per node).",
    )
    storage_size: KafkaDisk = Field(
        default="10Gi",
        description="Volume size per broker (the emptyDir size limit when ephemeral); at "
        "least 1Gi.",
    )
    storage_class: StorageClassName | None = Field(
        default=None,
        description="StorageClass of persistent volumes; unset uses the cluster default.",
    )
    controller_storage_size: KafkaDisk = Field(
        default="5Gi",
        description="Volume size per dedicated controller (KRaft metadata only, a few GiB); "
        "at least 1Gi. Dual-role nodes use `kafka.storageSize`.",
    )
    controller_storage_class: StorageClassName | None = Field(
        default=None,
        description="StorageClass of the controllers' persistent volumes; unset uses "
        "`kafka.storageClass`.",
    )
    rack_topology_key: LabelKey | None = Field(
        default=None,
        description="Node label that names a failure domain, e.g. "
        "`topology.kubernetes.io/zone`; set it to spread replicas across zones.",
    )
    dev_tools: bool = Field(
        default=False,
        description="Create KafkaUsers for development tools (the load generator). "
        "Never in production.",
    )
    super_users: tuple[str, ...] = Field(
        default=(),
        description="Extra Kafka super users (e.g. `User:CN=break-glass`); empty by default, "
        "Strimzi adds its own operators.",
    )
    wait_for_ready: bool = Field(
        default=True,
        description="Let `pulumi up` wait until Strimzi reports the Kafka cluster, topics and "
        "users Ready. Off only where no operator reconciles.",
    )
    broker_memory: BrokerMemory = Field(
        default="2Gi", description="Memory request and limit per broker; at least 1Gi."
    )
    broker_cpu: JvmCpu = Field(default="500m", description="CPU request per broker; at least 100m.")
    controller_memory: ControllerMemory = Field(
        default="1Gi",
        description="Memory request and limit per dedicated controller; at least 512Mi.",
    )
    controller_cpu: JvmCpu = Field(
        default="250m", description="CPU request per dedicated controller; at least 100m."
    )

    @property
    def dual_role(self) -> bool:
        return self.controllers == 0

    @property
    def replication(self) -> Replication:
        """The one replication setting: the Kafka resource's defaults, its internal topics
        and every catalog topic all take it from here."""
        return Replication.for_brokers(
            self.brokers, self.replication_factor, self.min_insync_replicas
        )

    @property
    def effective_replication_factor(self) -> int:
        return self.replication.factor

    @property
    def effective_min_insync_replicas(self) -> int:
        return self.replication.min_insync

    @model_validator(mode="after")
    def _replication_fits_the_cluster(self) -> Self:
        rf = self.replication_factor or min(3, self.brokers)
        min_isr = (
            self.min_insync_replicas
            if self.min_insync_replicas is not None
            else max(1, min(2, rf - 1))
        )
        if rf > self.brokers:
            raise ValueError(
                f"starling:kafka.replicationFactor ({rf}) must not exceed "
                f"starling:kafka.brokers ({self.brokers})"
            )
        if min_isr > rf:
            raise ValueError(
                f"starling:kafka.replicationFactor ({rf}) must be >= "
                f"starling:kafka.minInsyncReplicas ({min_isr}), or no write could ever succeed"
            )
        if self.brokers >= 2 and rf < 2:
            raise ValueError(
                f"starling:kafka.replicationFactor is 1 with {self.brokers} brokers: each "
                "partition then lives on one broker and goes offline whenever that broker "
                "restarts (every rolling restart); use 2 or more (3 recommended), or unset it"
            )
        if self.brokers >= 2 and min_isr > rf - 1:
            raise ValueError(
                f"starling:kafka.minInsyncReplicas ({min_isr}) must be at most "
                f"starling:kafka.replicationFactor - 1 ({rf - 1}) with {self.brokers} brokers: "
                "a rolling restart takes one broker down; with min ISR == RF every acks=all "
                "write and offset commit fails meanwhile and Strimzi cannot roll (the value is "
                "also the transaction-state log's min ISR). Set it to "
                f"{max(1, min(2, rf - 1))}, or unset it"
            )
        if self.controllers and self.controllers % 2 == 0:
            raise ValueError(
                f"starling:kafka.controllers must be 0 (dual-role brokers) or odd "
                f"(1, 3, 5) for a KRaft quorum, got {self.controllers}"
            )
        return self


class StoreConfig(_Section):
    persistence_size: StoreDisk | None = Field(
        default=None,
        description="Size of the store's PersistentVolumeClaim; unset keeps data in an "
        "emptyDir (lost when the pod goes). At least 256Mi.",
    )
    storage_class: StorageClassName | None = Field(
        default=None,
        description="StorageClass of the store's volume; unset uses the cluster default.",
    )
    memory: StoreMemory = Field(
        default="256Mi", description="Memory request and limit of the store; at least 64Mi."
    )
    cpu: StoreCpu = Field(default="100m", description="CPU request of the store; at least 50m.")

    @model_validator(mode="after")
    def _a_snapshot_fits_the_volume(self) -> Self:
        size = self.persistence_size
        if size is not None and parse_quantity(size) < parse_quantity(self.memory):
            raise ValueError(
                f"starling:store.persistenceSize ({size}) is smaller than starling:store.memory "
                f"({self.memory}): a snapshot of a full store would not fit on its volume; make "
                "the volume at least as large as the memory limit"
            )
        return self


class AirflowConfig(_Section):
    enabled: bool = Field(
        default=True, description="Deploy Airflow (official chart) and its database."
    )
    executor: Executor = Field(
        default="LocalExecutor",
        description="Airflow executor: LocalExecutor, CeleryExecutor, KubernetesExecutor, "
        "or a comma-separated combination.",
    )
    dags: Literal["baked", "gitSync"] = Field(
        default="baked",
        description="DAG delivery: `baked` into the Airflow image, or `gitSync` from "
        "`airflow.gitSyncRepo`.",
    )
    git_sync_repo: str | None = Field(
        default=None, description="Git repository URL for `dags: gitSync`."
    )
    git_sync_branch: str = Field(default="main", description="Branch for `dags: gitSync`.")
    git_sync_sub_path: str = Field(
        default="dags",
        description="Folder of the repository that holds the DAGs (`dags: gitSync`).",
    )
    database_size: DatabaseDisk | None = Field(
        default=None,
        description="Size of the metadata database's PersistentVolumeClaim; unset keeps it "
        "in an emptyDir (dev only: Airflow state is lost with the pod). At least 1Gi.",
    )
    storage_class: StorageClassName | None = Field(
        default=None, description="StorageClass of the database volume; unset uses the default."
    )

    @model_validator(mode="after")
    def _git_sync_needs_a_repo(self) -> Self:
        if self.dags == "gitSync" and not self.git_sync_repo:
            raise ValueError(
                "starling:airflow.dags is 'gitSync' but starling:airflow.gitSyncRepo is not "
                "set; set the repository URL or use dags 'baked'"
            )
        return self


class ServicesConfig(_Section):
    enabled: bool = Field(default=True, description="Deploy the stream services and the gateway.")
    replicas: int = Field(default=1, ge=1, description="Replicas of each service.")
    autoscaling: bool = Field(
        default=False, description="Add a CPU HorizontalPodAutoscaler per service."
    )
    max_replicas: int = Field(default=3, ge=1, description="Upper bound when autoscaling.")
    pod_disruption_budget: bool = Field(
        default=False, description="Add a PodDisruptionBudget (minAvailable 1) per service."
    )
    network_policy: bool = Field(
        default=True, description="Restrict the services' traffic with NetworkPolicies."
    )

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> Self:
        if self.max_replicas < self.replicas:
            raise ValueError(
                f"starling:services.maxReplicas ({self.max_replicas}) must be >= "
                f"starling:services.replicas ({self.replicas})"
            )
        return self


class IdentityConfig(_Section):
    """Who signs the tokens the gateway verifies: an external OIDC provider (`issuerUrl`) or,
    when none is configured, the built-in identity service (`starling run identity`)."""

    issuer_url: HttpUrl | None = Field(
        default=None,
        description="Issuer URL of an external OIDC provider (Keycloak, Dex, Auth0, Entra ID), "
        "compared exactly with the tokens' `iss`. Unset: the program deploys the built-in "
        "identity service and the gateway trusts it.",
    )
    audience: str = Field(
        default="starling",
        min_length=1,
        max_length=256,
        description="The `aud` the gateway requires (and the built-in service writes).",
    )
    jwks_url: HttpUrl | None = Field(
        default=None,
        description="External provider only: where the gateway fetches the signing keys; "
        "unset: the `jwks_uri` of the issuer's discovery document.",
    )
    public_url: HttpUrl | None = Field(
        default=None,
        description="Built-in service only: its issuer URL as clients reach it (the `iss` of "
        "its tokens). Unset in a dev stack: http://localhost:8081 (the port-forward of "
        "`identityPortForward`); a prod stack must set it (https).",
    )
    signing_keys: tuple[KeyId, ...] = Field(
        default=("k1",),
        min_length=1,
        description="Built-in service: signing key ids, newest first (the first signs, all "
        "are published). Rotate by adding a new id last, then moving it first; drop the old "
        "one after `tokenTtlSeconds` (docs/identity.md). Keys derive from the secret seed.",
    )
    token_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Built-in service: lifetime of an access token, in seconds.",
    )
    signup: bool | None = Field(
        default=None,
        description="Built-in service: self-service sign-up (`POST /v1/accounts`). Unset: on "
        "in a dev stack, off in a prod stack.",
    )
    dev_mode: bool | None = Field(
        default=None,
        description="Built-in service: dev mode (demo accounts with the documented dev "
        "password). Unset: on in a dev stack. Refused in a prod stack.",
    )
    demo_users: int = Field(
        default=0,
        ge=0,
        le=100_000_000,
        description="Built-in service, dev mode only: the traffic generator's users u1..uN "
        "can sign in with the documented dev password. Refused in a prod stack.",
    )
    trusted_proxies: tuple[Cidr, ...] = Field(
        default=(),
        description="Built-in service: CIDRs of proxies whose X-Forwarded-For names the "
        "client address recorded in login events and rate limits; none by default.",
    )

    @property
    def builtin(self) -> bool:
        return self.issuer_url is None

    @model_validator(mode="after")
    def _sources_do_not_mix(self) -> Self:
        if self.issuer_url is not None and self.public_url is not None:
            raise ValueError(
                "starling:identity.publicUrl configures the built-in identity service, but "
                "starling:identity.issuerUrl names an external provider; set one of them"
            )
        if self.issuer_url is None and self.jwks_url is not None:
            raise ValueError(
                "starling:identity.jwksUrl applies to an external provider only; set "
                "starling:identity.issuerUrl too, or remove jwksUrl (the built-in service's "
                "keys are found in-cluster)"
            )
        return self


class TrustUserHeaderConfig(_Section):
    enabled: bool = Field(
        default=False,
        description="Trust an authenticating ingress's `X-Starling-User` instead of "
        "verifying tokens (oauth2-proxy and the like). Off: the gateway verifies tokens.",
    )
    proxies: tuple[Cidr, ...] = Field(
        default=(),
        description="CIDRs of the proxies whose header counts; required when enabled.",
    )
    namespaces: tuple[NamespaceName, ...] = Field(
        default=(),
        description="Namespaces whose pods may reach the gateway's HTTP port when enabled "
        "(the NetworkPolicy admits no others); required when enabled.",
    )

    @model_validator(mode="after")
    def _enabled_needs_peers(self) -> Self:
        if self.enabled and not self.proxies:
            raise ValueError(
                "starling:gateway.trustUserHeader.enabled needs "
                "starling:gateway.trustUserHeader.proxies (the CIDRs of your authenticating "
                "proxy); without them no request could carry an identity"
            )
        if self.enabled and not self.namespaces:
            raise ValueError(
                "starling:gateway.trustUserHeader.enabled needs "
                "starling:gateway.trustUserHeader.namespaces (where the proxy runs); the "
                "gateway's HTTP port then admits only those namespaces"
            )
        return self


class GatewayConfig(_Section):
    trust_user_header: TrustUserHeaderConfig = TrustUserHeaderConfig()


class ImagesConfig(_Section):
    """Image references: `repository:tag`, `repository:tag@sha256:<digest>` or (store and
    database) `repository@sha256:<digest>`. A prod stack warns about each ref without a
    digest (docs/platform.md, "Images")."""

    services: ImageRef = Field(
        default="starling/services:0.1.0",
        description="Image of the stream services and gateway (`repository:tag`, optionally "
        "`@sha256:<digest>`).",
    )
    airflow: ImageRef = Field(
        default="starling/airflow:0.1.0",
        description="Airflow image (apache/airflow 3.3.2 + Kafka provider + our operators; "
        "`repository:tag`, optionally `@sha256:<digest>`).",
    )
    valkey: ImageRef = Field(
        default="valkey/valkey:9.0.0",
        description="Image of the store (tag, digest or `tag@digest`).",
    )
    postgres: ImageRef = Field(
        default="postgres:17.6",
        description="Image of Airflow's metadata database (tag, digest or `tag@digest`).",
    )
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent",
        description="Pull policy of our images (IfNotPresent suits `kind load docker-image`).",
    )

    @model_validator(mode="after")
    def _charts_need_a_tag(self) -> Self:
        # Both charts compose `repository:tag`; a digest rides along with the tag.
        for key, ref in (("services", self.services), ("airflow", self.airflow)):
            if parse_image(ref).tag is None:
                raise ValueError(
                    f"starling:images.{key} {ref!r} has a digest but no tag; its Helm chart "
                    "needs one: use 'repository:tag@sha256:<64 hex>'"
                )
        return self

    def unpinned(self) -> list[tuple[str, str]]:
        """(key, ref) of every image named by a tag only."""
        refs = (
            ("services", self.services),
            ("airflow", self.airflow),
            ("valkey", self.valkey),
            ("postgres", self.postgres),
        )
        return [(key, ref) for key, ref in refs if not parse_image(ref).pinned]


class StackConfig(_Section):
    """Everything a stack can configure. Field aliases are the config keys."""

    secret_seed: SeedStr = Field(
        description="Secret seed every password is derived from (HMAC-SHA256). Required; "
        f"set with: {SEED_COMMAND}",
    )
    environment: Literal["dev", "prod"] = Field(
        default="prod",
        description="What the stack is for. `prod` (the default, so a stack that forgets "
        "the key gets the strict rules) refuses demo accounts and dev mode and turns "
        "sign-up off unless set; `dev` turns them on for kind.",
    )
    # Sections are frozen, so one shared default instance per section is safe.
    strimzi: StrimziConfig = StrimziConfig()
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    airflow: AirflowConfig = AirflowConfig()
    services: ServicesConfig = ServicesConfig()
    identity: IdentityConfig = IdentityConfig()
    gateway: GatewayConfig = GatewayConfig()
    images: ImagesConfig = ImagesConfig()

    @model_validator(mode="after")
    def _sections_agree(self) -> Self:
        if self.strimzi.crds_from == "chart" and not self.strimzi.install_operator:
            raise ValueError(
                "starling:strimzi.crdsFrom is 'chart' but starling:strimzi.installOperator is "
                "false, so nothing would install the Strimzi CRDs; use crdsFrom 'directory'"
            )
        if self.airflow.enabled and not self.kafka.wait_for_ready:
            raise ValueError(
                "starling:airflow.enabled needs starling:kafka.waitForReady: Airflow's Kafka "
                "connection trusts the cluster CA, which exists only once Kafka is Ready"
            )
        self._identity_fits_the_environment()
        return self

    def _identity_fits_the_environment(self) -> None:
        identity = self.identity
        if self.environment == "prod":
            if identity.dev_mode:
                raise ValueError(
                    "starling:identity.devMode is true in a prod stack "
                    "(starling:environment is 'prod'); dev mode has a documented password, "
                    "so it is for starling:environment 'dev' only"
                )
            if identity.demo_users:
                raise ValueError(
                    f"starling:identity.demoUsers is {identity.demo_users} in a prod stack "
                    "(starling:environment is 'prod'); a prod stack has no default account, "
                    "set it to 0"
                )
            for key, url in (
                ("issuerUrl", identity.issuer_url),
                ("publicUrl", identity.public_url),
            ):
                if url is not None and not url.startswith("https://"):
                    raise ValueError(
                        f"starling:identity.{key} must be an https URL in a prod stack "
                        f"(tokens and session cookies travel to it), got {url!r}"
                    )
            if self.identity_deployed and identity.public_url is None:
                raise ValueError(
                    "starling:identity.publicUrl is required in a prod stack that runs the "
                    "built-in identity service: the https URL clients reach it at (or set "
                    "starling:identity.issuerUrl to use your OIDC provider instead)"
                )
        if identity.demo_users and not self.identity_dev_mode:
            raise ValueError(
                "starling:identity.demoUsers needs starling:identity.devMode (demo accounts "
                "sign in with the documented dev password)"
            )

    @property
    def identity_deployed(self) -> bool:
        """The built-in identity service runs unless an external issuer is configured or the
        gateway trusts an ingress's header instead of tokens."""
        return (
            self.services.enabled
            and self.identity.builtin
            and not self.gateway.trust_user_header.enabled
        )

    @property
    def identity_dev_mode(self) -> bool:
        dev_mode = self.identity.dev_mode
        return self.environment == "dev" if dev_mode is None else dev_mode

    @property
    def identity_signup(self) -> bool:
        signup = self.identity.signup
        return self.environment == "dev" if signup is None else signup

    @property
    def identity_public_url(self) -> str:
        """The built-in issuer's URL as clients see it (the default suits kind)."""
        return self.identity.public_url or DEV_IDENTITY_URL

    def warnings(self) -> list[str]:
        """Settings that are allowed but that a person should hear about at every run."""
        found = []
        if self.environment == "prod":
            for key, ref in self.images.unpinned():
                found.append(
                    f"starling:images.{key} {ref!r} is not pinned by digest: the tag can be "
                    "pushed again and nodes would run different images; pin it as "
                    "'repository:tag@sha256:<digest>' (crane digest <ref>, or docker inspect "
                    "--format '{{index .RepoDigests 0}}' <ref>)"
                )
        return found

    def secret_seed_output(self) -> pulumi.Output[str]:
        """The seed as a Pulumi secret, the only form the rest of the program sees."""
        return pulumi.Output.secret(self.secret_seed.get_secret_value())


# --- loading ------------------------------------------------------------------------------


def _raw_project_config() -> dict[str, Any]:
    """Every `starling:*` key the engine handed us, keyed without the namespace."""
    keys = set(pulumi_config.get_config_env()) | set(pulumi_config.CONFIG.get())
    prefix = f"{PROJECT}:"
    return {
        key.removeprefix(prefix): pulumi_config.get_config(key)
        for key in sorted(keys)
        if key.startswith(prefix)
    }


def _decode(value: Any) -> Any:
    """Config values arrive as strings; lists and maps arrive JSON-encoded."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"kafka.brokers": "3"}` -> `{"kafka": {"brokers": "3"}}`, at any depth
    (`gateway.trustUserHeader.enabled`); structured values merge with dotted keys."""
    nested: dict[str, Any] = {}

    def merge(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
        *parents, leaf = path
        node = target
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                inner = ".".join(path[: depth + 1])
                raise StarlingConfigError(
                    f"invalid stack configuration: starling:{inner} is set as a value and "
                    f"starling:{'.'.join(path)} as a key inside it; keep one of them"
                )
            node = child
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            for inner, inner_value in value.items():
                merge(node[leaf], (str(inner),), inner_value)
            return
        if leaf in node and node[leaf] != value:
            raise StarlingConfigError(
                f"invalid stack configuration: starling:{'.'.join(path)} is set twice, as a "
                f"key and inside the structured value starling:{path[0]}; keep one of them"
            )
        node[leaf] = value

    # Dotted keys first, then structured sections, so a clash is always reported the same way.
    for key, raw in sorted(flat.items(), key=lambda item: "." not in item[0]):
        value = _decode(raw)
        path = tuple(key.split("."))
        if len(path) == 1 and isinstance(value, dict) and key != SEED_KEY:
            for inner, inner_value in value.items():
                merge(nested, (key, str(inner)), inner_value)
        else:
            merge(nested, path, value)
    return nested


def _is_stored_as_secret(full_key: str) -> bool:
    return pulumi_config.is_config_secret(full_key) or (
        full_key in pulumi_config.get_config_secret_keys_env()
    )


def load_stack_config() -> StackConfig:
    """Read and validate the stack's config; raise `StarlingConfigError` on any problem."""
    raw = _raw_project_config()
    seed_key = f"{PROJECT}:{SEED_KEY}"
    if raw.get(SEED_KEY) in (None, ""):
        raise StarlingConfigError(
            f"missing required secret config {seed_key}: every password is derived from it. "
            f"Set it with:\n  {SEED_COMMAND}"
        )
    if not _is_stored_as_secret(seed_key):
        raise StarlingConfigError(
            f"{seed_key} is stored in plain text; store it encrypted instead with:\n"
            f"  {SEED_COMMAND}"
        )
    try:
        config = StackConfig.model_validate(_nest(raw))
    except ValidationError as error:
        raise StarlingConfigError(describe_errors(error)) from None
    for warning in config.warnings():
        pulumi.log.warn(warning)
    return config


def _key_name(loc: tuple[str | int, ...]) -> str:
    name = PROJECT + ":"
    for index, part in enumerate(loc):
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if index else "") + part
    return name


def describe_errors(error: ValidationError) -> str:
    """One line per problem, each naming the full config key and what it accepts."""
    lines = ["invalid stack configuration:"]
    for problem in error.errors():
        loc = tuple(problem["loc"])
        key = _key_name(loc)
        if problem["type"] == "extra_forbidden":
            section = tuple(str(part) for part in loc[:-1])
            allowed = [
                ref.key for ref in config_reference() if not section or ref.path[:-1] == section
            ]
            lines.append(f"  {key}: unknown key; allowed here: {', '.join(allowed)}")
        elif problem["type"] == "value_error":
            message = str(problem["ctx"]["error"])
            lines.append(
                f"  {message}" if message.startswith(PROJECT + ":") else f"  {key}: {message}"
            )
        elif loc and loc[0] == "secretSeed":
            # Never echo the seed, not even a wrong one.
            lines.append(f"  {key}: {problem['msg']}; set it with: {SEED_COMMAND}")
        else:
            lines.append(f"  {key}: {problem['msg']} (got {problem['input']!r})")
    return "\n".join(lines)


# --- reference (Pulumi.yaml declarations and the docs table) --------------------------------


@dataclass(frozen=True)
class ConfigKey:
    path: tuple[str, ...]
    pulumi_type: str
    default: Any
    description: str
    secret: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)


def _pulumi_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _pulumi_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _pulumi_type(inner)
    if origin is tuple:
        return "array"
    if origin is Literal or annotation in (str, SecretStr):
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    raise TypeError(f"no Pulumi config type for {annotation!r}")


def _pulumi_secret(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return _pulumi_secret(typing.get_args(annotation)[0])
    return annotation is SecretStr


def _walk(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[ConfigKey]:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _walk(annotation, (*prefix, alias))
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        yield ConfigKey(
            path=(*prefix, alias),
            pulumi_type=_pulumi_type(annotation),
            default=list(default) if isinstance(default, tuple) else default,
            description=field.description or "",
            secret=_pulumi_secret(annotation),
        )


def config_reference() -> list[ConfigKey]:
    """Every config key the model accepts, in declaration order."""
    return list(_walk(StackConfig, ()))


def markdown_table() -> str:
    """The config table for docs/platform.md (a test keeps the doc in step with the model)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for ref in config_reference():
        default = "required, secret" if ref.secret else json.dumps(ref.default)
        rows.append(f"| `{ref.key}` | {ref.pulumi_type} | `{default}` | {ref.description} |")
    return "\n".join(rows)
