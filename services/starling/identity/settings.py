"""Identity-service settings (`STARLING_IDENTITY_*`, plus the chart's `HTTP_PORT`).

Kafka, the store and the metrics port come from `RuntimeSettings` like every service.
A bad value stops the service at start with a message naming the variable; no message
ever quotes the seed.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from starling.web.settings import HttpSettings, http_port_field

# The seed is the stack's secret (`openssl rand -hex 32` gives 64 bytes); fewer than 32
# bytes cannot carry the 256 bits an Ed25519 key needs.
MIN_SEED_BYTES = 32
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _comma_separated(value: Any) -> Any:
    # Lists come from the environment as `a,b,c`, not as JSON.
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class IdentitySettings(HttpSettings):
    model_config = SettingsConfigDict(
        env_prefix="STARLING_IDENTITY_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    http_port: int = http_port_field(8081, "STARLING_IDENTITY_")
    # The `iss` of every token, and where verifiers find the discovery document
    # (`<issuer>/.well-known/openid-configuration`): the address clients reach us at.
    issuer: str
    audience: str = Field(default="starling", min_length=1, max_length=256)
    # The stack's secret seed; signing keys are derived from its bytes (see `keys`).
    seed_file: Path
    # Key ids, newest first: the first signs, all are published. Rotation puts a new id
    # first and drops the old one once every token it signed has expired.
    signing_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["k1"])
    token_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Self-service sign-up (`POST /v1/accounts`) is for demos: off unless asked for.
    signup: bool = False
    # Dev mode only: the traffic generator's users `u1..uN` sign in with the documented
    # dev password (`accounts.DEV_PASSWORD`). Prod stacks have no default account.
    dev_mode: bool = False
    demo_users: int = Field(default=0, ge=0, le=100_000_000)
    # Proxies whose X-Forwarded-For (and X-Client-Country) are believed; none by default.
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)
    # Browser origins (`scheme://host[:port]`, comma-separated) whose pages may call this
    # service with credentials (CORS), e.g. the gateway's live page. None by default: only
    # listed origins get `Access-Control-Allow-Origin`, never `*`.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Sign-in attempts admitted per sliding window, per account name and per client address.
    signin_per_account: int = Field(default=5, ge=1, le=10_000)
    signin_per_address: int = Field(default=20, ge=1, le=1_000_000)
    signin_window_s: int = Field(default=300, ge=1, le=24 * 3600)
    # A sign-in answers only once its login event is acknowledged; past this, 503.
    ack_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Argon2id cost. Raising any of these rehashes each password at its next sign-in.
    # The defaults are argon2-cffi's (RFC 9106's low-memory profile).
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=65_536, ge=8 * 4, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, ge=1, le=64)
    # Hashes computed at once: each holds `argon2_memory_kib` of memory for ~50 ms, so a
    # burst of sign-ins queues instead of exhausting the pod's memory.
    max_concurrent_hashes: int = Field(default=4, ge=1, le=256)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment (OIDC Discovery 1.0 §2)")
        return value

    @field_validator("seed_file")
    @classmethod
    def _seed_is_long_enough(cls, value: Path) -> Path:
        try:
            size = value.stat().st_size if value.is_file() else None
        except OSError as error:
            raise ValueError(f"{value} cannot be read: {error.strerror}") from None
        if size is None:
            raise ValueError(f"{value} is not a file")
        if size < MIN_SEED_BYTES:
            raise ValueError(
                f"{value} holds {size} bytes; the seed needs at least {MIN_SEED_BYTES}"
            )
        return value

    @field_validator("signing_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return _comma_separated(value)

    @field_validator("signing_keys")
    @classmethod
    def _keys_are_ids(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one key id (the first one signs)")
        for key_id in value:
            if not KEY_ID.match(key_id):
                raise ValueError(f"key id {key_id!r} is not 1-64 of [A-Za-z0-9._-]")
        duplicates = sorted({key_id for key_id in value if value.count(key_id) > 1})
        if duplicates:
            raise ValueError(f"key ids must be unique; repeated: {', '.join(duplicates)}")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        return _comma_separated(value)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _comma_separated(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], no path"
                    " (e.g. http://127.0.0.1:8080)"
                )
        # Browsers send the origin in lower case without a default port: compare that way.
        return [origin.lower() for origin in value]

    @model_validator(mode="after")
    def _demo_users_only_in_dev_mode(self) -> Self:
        if self.demo_users and not self.dev_mode:
            raise ValueError(
                "STARLING_IDENTITY_DEMO_USERS needs STARLING_IDENTITY_DEV_MODE=true: demo"
                " users sign in with a published password, which only a dev stack may have"
            )
        return self

    @property
    def issuer_base(self) -> str:
        """The issuer without a trailing slash, to append well-known paths to."""
        return self.issuer.rstrip("/")
