"""Connecting to the store."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Short socket timeouts: a store that does not answer within seconds is treated as down
# (a transient fault the runtime retries), not waited on forever.
SOCKET_TIMEOUT_S = 5.0


def connect(
    *,
    host: str,
    port: int,
    db: int = 0,
    password: str | None = None,
    tls: bool = False,
    ca_file: str | None = None,
) -> redis.Redis:
    """A client for the store; with `tls` the server must present a certificate that chains
    to `ca_file` (else the system's CAs) and names `host`, or the connection is refused."""
    tls_kwargs: dict[str, Any] = {}
    if tls:
        tls_kwargs = {
            "ssl": True,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_ca_certs": ca_file,
        }
    return redis.Redis(
        host=host,
        port=port,
        db=db,
        password=password,
        **tls_kwargs,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        # One retry policy, the runtime's (exponential backoff within a budget, visible in
        # metrics), re-running the whole idempotent batch, instead of a second, hidden one
        # in the client library replaying single commands.
        retry=Retry(NoBackoff(), 0),
    )


def connect_with(settings_kwargs: dict[str, Any]) -> redis.Redis:
    return connect(**settings_kwargs)


def reachable(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
