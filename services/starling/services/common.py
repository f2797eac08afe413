"""What every service module shares: deterministic ids and store connection."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from starling.runtime.config import RuntimeSettings
from starling.store.client import connect, reachable

# Ids of derived events are UUIDv5 of what they derive from: reprocessing the same
# input yields the same ids, so downstream consumers and the store dedupe them.
STARLING_NAMESPACE = uuid.UUID("6f1c2e1a-7b43-5d8e-9a52-3c1f0b7e2d41")


def derived_id(*parts: Any) -> uuid.UUID:
    return uuid.uuid5(STARLING_NAMESPACE, ":".join(str(part) for part in parts))


def store_client(settings: RuntimeSettings) -> redis.Redis:
    return connect(**settings.redis_kwargs())


class StoreReadiness:
    """A cached PING, so frequent /readyz probes do not each cost a round trip."""

    def __init__(self, client: redis.Redis, cache_s: float = 1.0) -> None:
        self._client = client
        self._cache_s = cache_s
        self._checked_at = -1e9
        self._ok = False

    def __call__(self) -> bool:
        import time

        now = time.monotonic()
        if now - self._checked_at >= self._cache_s:
            self._ok = reachable(self._client)
            self._checked_at = now
        return self._ok
