"""Sliding-window attempt limits in the store (per account name, per client address).

Each limit is a sorted set of the attempts it admitted, scored by the store's clock (ms):
one script drops what left the window, counts, and either admits the attempt into every
set or refuses it, with the wait until the oldest attempt of the fullest set leaves the
window. One script means concurrent attempts on any replica can never get past the limit
between a count and a write, and one clock (the store's) means replicas agree on it.

Refused attempts are not recorded: the wait told to a client (`Retry-After`) is exact,
and once it has passed one attempt is admitted again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

# KEYS: one sorted set per limit; ARGV: window (ms), a member unique to this attempt, then
# each key's limit. Returns {0, 0} when admitted, else {wait in ms, index of the limit}.
_ATTEMPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local wait, which = 0, 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + window - now
    if until_free > wait then
      wait, which = until_free, i
    end
  end
end
if wait > 0 then
  return {wait, which}
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, window)
end
return {0, 0}
"""


@dataclass(frozen=True)
class Limit:
    """One window: at most `limit` attempts in the sorted set `key`; `scope` names it."""

    scope: str
    key: str
    limit: int


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    # When refused: which limit, and whole seconds until it admits an attempt again.
    scope: str | None = None
    retry_after_s: int = 0


class SlidingWindow:
    def __init__(self, store: redis.Redis, window_s: int) -> None:
        self.window_ms = window_s * 1000
        self._attempt = store.register_script(_ATTEMPT)

    def attempt(self, limits: Sequence[Limit], attempt_id: str) -> Verdict:
        """Admit (and record) an attempt under every limit, or refuse it (blocking)."""
        result: Any = self._attempt(
            keys=[limit.key for limit in limits],
            args=[self.window_ms, attempt_id, *(limit.limit for limit in limits)],
        )
        wait_ms, which = int(result[0]), int(result[1])
        if wait_ms <= 0:
            return Verdict(admitted=True)
        return Verdict(
            admitted=False,
            scope=limits[which - 1].scope,
            retry_after_s=max(1, math.ceil(wait_ms / 1000)),
        )
