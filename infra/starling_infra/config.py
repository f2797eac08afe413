"""The stack configuration: one validated, frozen model, loaded once from Pulumi config.

Keys are flat and dotted (`starling:kafka.brokers`), so `Pulumi.yaml` can declare a type for
each of them and `pulumi config set kafka.brokers 3` works without `--path`. Structured values
(`pulumi config set --path kafka.brokers 3`, which stores `starling:kafka: {brokers: 3}`) are
accepted too and mean the same thing.

Every default lives in this module. Bad config fails here, before the program creates any
resource, with a message that names the key and what is allowed.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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

from starling_infra.meta import REPO_ROOT

PROJECT = "starling"
SEED_KEY = "secretSeed"
SEED_COMMAND = 'pulumi config set --secret starling:secretSeed "$(openssl rand -hex 32)"'
MIN_SEED_LENGTH = 32

ALLOWED_EXECUTORS = ("LocalExecutor", "CeleryExecutor", "KubernetesExecutor")


class StarlingConfigError(pulumi.RunError):
    """Bad stack configuration. A `RunError` so the CLI prints the message, not a traceback."""


# --- value types --------------------------------------------------------------------------

Quantity = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$",
    ),
]
"""A Kubernetes resource quantity such as `512Mi`, `2Gi` or `250m`."""

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$")


def _check_image(ref: str) -> str:
    repository, _, tag = ref.rpartition(":")
    if not repository or "/" in tag or not _TAG.match(tag) or not _REPOSITORY.match(repository):
        raise ValueError(f"expected an image reference 'repository:tag', got {ref!r}")
    if tag == "latest":
        raise ValueError(f"pin a version tag instead of 'latest' in {ref!r}")
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


def split_image(ref: str) -> tuple[str, str]:
    """`repo/name:tag` -> (`repo/name`, `tag`); refs are validated to have a tag."""
    repository, _, tag = ref.rpartition(":")
    return repository, tag


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
        description="Cluster-wide min.insync.replicas; unset means max(1, min(2, RF - 1)).",
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
    storage_size: Quantity = Field(
        default="10Gi", description="Volume size per node (the emptyDir size limit when ephemeral)."
    )
    storage_class: str | None = Field(
        default=None,
        description="StorageClass of persistent volumes; unset uses the cluster default.",
    )
    rack_topology_key: str | None = Field(
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
    broker_memory: Quantity = Field(
        default="2Gi", description="Memory request and limit per broker."
    )
    broker_cpu: Quantity = Field(default="500m", description="CPU request per broker.")
    controller_memory: Quantity = Field(
        default="1Gi", description="Memory request and limit per dedicated controller."
    )
    controller_cpu: Quantity = Field(
        default="250m", description="CPU request per dedicated controller."
    )

    @property
    def dual_role(self) -> bool:
        return self.controllers == 0

    @property
    def effective_replication_factor(self) -> int:
        return self.replication_factor or min(3, self.brokers)

    @property
    def effective_min_insync_replicas(self) -> int:
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return max(1, min(2, self.effective_replication_factor - 1))

    @model_validator(mode="after")
    def _replication_fits_the_cluster(self) -> Self:
        rf = self.effective_replication_factor
        min_isr = self.effective_min_insync_replicas
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
        if self.controllers and self.controllers % 2 == 0:
            raise ValueError(
                f"starling:kafka.controllers must be 0 (dual-role brokers) or odd "
                f"(1, 3, 5) for a KRaft quorum, got {self.controllers}"
            )
        return self


class StoreConfig(_Section):
    persistence_size: Quantity | None = Field(
        default=None,
        description="Size of the store's PersistentVolumeClaim; unset keeps data in an "
        "emptyDir (lost when the pod goes).",
    )
    storage_class: str | None = Field(
        default=None,
        description="StorageClass of the store's volume; unset uses the cluster default.",
    )
    memory: Quantity = Field(default="256Mi", description="Memory request and limit of the store.")
    cpu: Quantity = Field(default="100m", description="CPU request of the store.")


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
    database_size: Quantity | None = Field(
        default=None,
        description="Size of the metadata database's PersistentVolumeClaim; unset keeps it "
        "in an emptyDir (dev only: Airflow state is lost with the pod).",
    )
    storage_class: str | None = Field(
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


class ImagesConfig(_Section):
    services: ImageRef = Field(
        default="starling/services:0.1.0", description="Image of the stream services and gateway."
    )
    airflow: ImageRef = Field(
        default="starling/airflow:0.1.0",
        description="Airflow image (apache/airflow 3.3.2 + Kafka provider + our operators).",
    )
    valkey: ImageRef = Field(default="valkey/valkey:9.0.0", description="Image of the store.")
    postgres: ImageRef = Field(
        default="postgres:17.6", description="Image of Airflow's metadata database."
    )
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent",
        description="Pull policy of our images (IfNotPresent suits `kind load docker-image`).",
    )


class StackConfig(_Section):
    """Everything a stack can configure. Field aliases are the config keys."""

    secret_seed: SeedStr = Field(
        description="Secret seed every password is derived from (HMAC-SHA256). Required; "
        f"set with: {SEED_COMMAND}",
    )
    # Sections are frozen, so one shared default instance per section is safe.
    strimzi: StrimziConfig = StrimziConfig()
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    airflow: AirflowConfig = AirflowConfig()
    services: ServicesConfig = ServicesConfig()
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
        return self

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
    """`{"kafka.brokers": "3"}` -> `{"kafka": {"brokers": "3"}}`; structured sections merge."""
    nested: dict[str, Any] = {}

    def put(section: str, leaf: str, value: Any) -> None:
        target = nested.setdefault(section, {})
        if not isinstance(target, dict):
            raise StarlingConfigError(
                f"invalid stack configuration: starling:{section} is set as a value and "
                f"starling:{section}.{leaf} as a key inside it; keep one of them"
            )
        if leaf in target and target[leaf] != value:
            raise StarlingConfigError(
                f"invalid stack configuration: starling:{section}.{leaf} is set twice, as a "
                f"key and inside the structured value starling:{section}; keep one of them"
            )
        target[leaf] = value

    for key, raw in flat.items():
        value = _decode(raw)
        section, dot, leaf = key.partition(".")
        if dot:
            put(section, leaf, value)
        elif isinstance(value, dict) and section != SEED_KEY:
            for inner, inner_value in value.items():
                put(section, str(inner), inner_value)
        else:
            nested[section] = value
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
        return StackConfig.model_validate(_nest(raw))
    except ValidationError as error:
        raise StarlingConfigError(describe_errors(error)) from None


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
