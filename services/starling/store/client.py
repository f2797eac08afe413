"""Connecting to the store."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Short socket timeouts: a store that does not answer within seconds is treated as down
# (a transient fault the runtime retries), not waited on forever.
SOCKET_TIMEOUT_S = 5.0


def connect(*, host: str, port: int, db: int = 0, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        db=db,
        password=password,
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
