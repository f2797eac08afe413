"""The settings every HTTP service has (its own prefix, plus the chart's `HTTP_PORT`)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


def http_port_field(default: int, env_prefix: str) -> Any:
    """The `http_port` field: the chart sets HTTP_PORT (it names the container port after
    it), `<env_prefix>HTTP_PORT` works too; 0 picks a free port."""
    return Field(
        default=default,
        ge=0,
        le=65_535,
        validation_alias=AliasChoices("HTTP_PORT", f"{env_prefix}HTTP_PORT"),
    )


class HttpSettings(BaseSettings):
    """A service's settings base: subclasses set `model_config` (their prefix) and
    declare `http_port = http_port_field(<default>, <prefix>)`."""

    http_port: int
    http_host: str = "0.0.0.0"
