"""Service configuration from the environment: the deployment contract of the services chart.

Every setting is an environment variable named like the field in upper case (the chart
sets `STARLING_SERVICE`, `KAFKA_*`, `STORE_*`, `METRICS_PORT`); the `STARLING_*` tuning
knobs have defaults suited to production. A bad value fails at start with a message that
names the variable, never later inside a client library.

Secrets come from files: `KAFKA_SASL_PASSWORD_FILE` and `STORE_PASSWORD_FILE` name a file
(a mounted Secret) holding the password, so the value is never in the environment, where
`/proc/<pid>/environ`, crash dumps and `kubectl describe` show it. The plain variables stay
for local runs; setting both is an error (which one would win is not obvious).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["ingestion", "trends", "timelines", "notifier", "gateway", "identity"]
# What `starling run` can start (and so what infra deploys): the four stream services,
# the gateway (`starling.gateway`) and the built-in identity service
# (`starling.identity`), the last two HTTP servers rather than consumer loops.
SERVICE_NAMES: tuple[str, ...] = (
    "ingestion",
    "trends",
    "timelines",
    "notifier",
    "gateway",
    "identity",
)
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class ConfigError(ValueError):
    """The environment does not describe a runnable service; the message names the variable."""


# Password settings that may come from a file: field -> its `*_FILE` field.
_SECRET_FILES = {
    "kafka_sasl_password": "kafka_sasl_password_file",
    "store_password": "store_password_file",
}


def read_secret_file(variable: str, path: str | Path) -> str:
    """The secret in `path` (one trailing newline dropped, as `echo` and editors add one);
    a missing, unreadable or empty file is a ValueError naming `variable`, never the value."""
    try:
        value = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"{variable}={path}: no such file; mount the Secret there or fix the path"
        ) from None
    except OSError as exc:
        raise ValueError(f"{variable}={path}: cannot read it ({exc.strerror})") from None
    value = value.removesuffix("\n")
    if not value:
        raise ValueError(f"{variable}={path}: the file is empty")
    return value


def resolve_secret_files(data: Any, fields: dict[str, str]) -> Any:
    """A `mode="before"` validator's body: fill each secret field from its `*_FILE` field."""
    if not isinstance(data, dict):
        return data
    resolved = dict(data)
    for field, file_field in fields.items():
        path = resolved.get(file_field)
        if path in (None, ""):
            continue
        if resolved.get(field) not in (None, ""):
            raise ValueError(
                f"both {field.upper()} and {file_field.upper()} are set; keep only "
                f"{file_field.upper()} (the value stays out of the environment)"
            )
        resolved[field] = read_secret_file(file_field.upper(), str(path))
    return resolved


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True
    )

    starling_service: ServiceName
    kafka_bootstrap_servers: str = Field(min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_ca_location: Path | None = None
    # Consumer group; the access map names it `starling-<service>` and ACLs allow exactly
    # that, so override it only where no ACLs apply (tests sharing one broker).
    kafka_group_id: str | None = None
    # Static membership (e.g. the pod name): a restarted pod gets its partitions back at
    # once instead of after the session timeout.
    kafka_group_instance_id: str | None = None
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=300_000)

    store_host: str = "localhost"
    store_port: int = Field(default=6379, ge=1, le=65_535)
    store_password: SecretStr | None = None
    store_password_file: Path | None = None
    store_db: int = Field(default=0, ge=0, le=15)
    # TLS to the store (`rediss://`): the chain is verified against STORE_CA_FILE (the
    # program's internal CA) and the certificate must name STORE_HOST.
    store_tls: bool = False
    store_ca_file: Path | None = None

    metrics_port: int = Field(default=9100, ge=0, le=65_535)

    # Topic names are the catalog's, optionally prefixed (tests share one broker).
    starling_topic_prefix: str = ""
    # Large batches amortise the synchronous commit (a round trip, ~1-3 ms) per batch; a
    # quiet stream still gets small batches after `batch_timeout_ms`.
    starling_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # How long one poll waits to fill a batch: the latency a quiet stream adds.
    starling_batch_timeout_ms: int = Field(default=20, ge=1, le=10_000)
    starling_shutdown_timeout_s: float = Field(default=20.0, gt=0, le=600)
    # Transient faults (store or broker unreachable) are retried this long per batch,
    # with exponential backoff; then the process exits without committing.
    starling_retry_budget_s: float = Field(default=60.0, gt=0, le=3_600)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        return resolve_secret_files(data, _SECRET_FILES)

    @model_validator(mode="after")
    def _store_tls_is_complete(self) -> Self:
        if self.store_ca_file is not None:
            if not self.store_tls:
                raise ValueError(
                    "STORE_CA_FILE is set but STORE_TLS is not true; set STORE_TLS=true"
                    " (the CA only matters for a TLS connection) or unset STORE_CA_FILE"
                )
            if not self.store_ca_file.is_file():
                raise ValueError(
                    f"STORE_CA_FILE={self.store_ca_file}: no such file; mount the store's CA there"
                )
        return self

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_sasl_username:
                raise ValueError(
                    f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol}"
                )
            if self.kafka_sasl_password is None:
                raise ValueError(
                    "KAFKA_SASL_PASSWORD_FILE (or, for local runs, KAFKA_SASL_PASSWORD) is"
                    f" required with KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol}"
                )
        elif self.kafka_sasl_username:
            raise ValueError(
                "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not authenticate with SASL"
            )
        if self.kafka_ssl_ca_location is not None and not self.kafka_ssl_ca_location.is_file():
            raise ValueError(f"KAFKA_SSL_CA_LOCATION={self.kafka_ssl_ca_location} is not a file")
        return self

    @classmethod
    def from_env(cls, **overrides: Any) -> RuntimeSettings:
        """Read the environment (`overrides` win); raise ConfigError naming each bad variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @property
    def group_id(self) -> str:
        return self.kafka_group_id or f"starling-{self.starling_service}"

    def topic(self, catalog_name: str) -> str:
        return self.starling_topic_prefix + catalog_name

    def kafka_common(self) -> dict[str, Any]:
        """Connection and security settings shared by the consumer and the producer."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
            "client.id": f"starling-{self.starling_service}",
        }
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None  # checked by the validator
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            # Host-name verification stays on: Strimzi's certificates name the services.
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.kafka_ssl_ca_location is not None:
                config["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
        return config

    def consumer_config(self) -> dict[str, Any]:
        config = self.kafka_common()
        config.update(
            {
                "group.id": self.group_id,
                "partition.assignment.strategy": "cooperative-sticky",
                # Offsets are committed by the runtime, explicitly, once effects are durable.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.kafka_session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.kafka_session_timeout_ms // 5),
                # A retry budget plus one batch must fit; otherwise the group evicts a
                # member that is only waiting out a store outage.
                "max.poll.interval.ms": int(self.starling_retry_budget_s * 1000) + 240_000,
            }
        )
        if self.kafka_group_instance_id:
            config["group.instance.id"] = self.kafka_group_instance_id
        return config

    def producer_config(self) -> dict[str, Any]:
        config = self.kafka_common()
        config.update(
            {
                # Retries never duplicate or reorder what one producer wrote.
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                # Unreachable for this long means a batch fails and is retried, rather
                # than a flush that seems to hang.
                "message.timeout.ms": 30_000,
                "partitioner": "murmur2_random",
            }
        )
        return config

    def redis_kwargs(self) -> dict[str, Any]:
        return {
            "host": self.store_host,
            "port": self.store_port,
            "db": self.store_db,
            "password": (
                self.store_password.get_secret_value() if self.store_password is not None else None
            ),
            "tls": self.store_tls,
            "ca_file": str(self.store_ca_file) if self.store_ca_file is not None else None,
        }


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Build a service's own settings from the environment; ConfigError names the variable."""
    try:
        return settings_class()
    except ValidationError as exc:
        prefix = str(settings_class.model_config.get("env_prefix") or "")
        raise ConfigError(_describe(exc, prefix)) from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if location:
            problems.append(f"{(prefix + location[0]).upper()}: {message}")
        else:
            problems.append(message)
    return "invalid service configuration: " + "; ".join(problems)
