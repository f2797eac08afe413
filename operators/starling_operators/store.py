"""Store (Redis protocol) keys Airflow writes and reads, and interval-idempotent writes.

Everything Airflow derives lives under one prefix (`starling:airflow` by default) and,
for batch results, under the data interval it was computed from: a re-run of an interval
replaces that interval's keys (delete, then write, in one MULTI/EXEC), it never adds to
them.

The follow graph is *read* from the store's social graph (`starling.store.keys`:
`g:following:<u>`, `g:blocked:<u>`, `g:muted:<u>`), which the notifier keeps current from
follow/unfollow/block/mute interactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starling.store import keys as store_keys
from starling_operators import settings

if TYPE_CHECKING:
    import redis

# Interval results are kept for a month: enough for dashboards and re-runs to compare.
INTERVAL_TTL = timedelta(days=30)


def interval_id(start: datetime, end: datetime) -> str:
    return f"{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"


def interval_key(kind: str, start: datetime, end: datetime, *parts: object) -> str:
    tail = "".join(f":{part}" for part in parts)
    return f"{settings.store_prefix()}:{kind}:{interval_id(start, end)}{tail}"


def key(*parts: object) -> str:
    return ":".join([settings.store_prefix(), *(str(part) for part in parts)])


_GRAPH_KEYS = {
    "following": store_keys.following,
    "blocked": store_keys.blocked,
    "muted": store_keys.muted,
}


def graph_key(relation: str, user: int) -> str:
    return _GRAPH_KEYS[relation](user)


class IntervalWriter:
    """Collects an interval's writes; `commit()` replaces whatever an earlier run of the same
    interval wrote (tracked in an index set) atomically."""

    def __init__(self, client: redis.Redis, kind: str, start: datetime, end: datetime) -> None:
        self._client = client
        self._index = interval_key(kind, start, end, "keys")
        self._kind, self._start, self._end = kind, start, end
        self._hashes: dict[str, Mapping[str, str]] = {}
        self._zsets: dict[str, Mapping[str, float]] = {}

    def key(self, *parts: object) -> str:
        return interval_key(self._kind, self._start, self._end, *parts)

    def hash(self, name: str, fields: Mapping[str, str]) -> None:
        if fields:
            self._hashes[name] = fields

    def zset(self, name: str, members: Mapping[str, float]) -> None:
        if members:
            self._zsets[name] = members

    @property
    def keys(self) -> list[str]:
        return sorted([*self._hashes, *self._zsets])

    def commit(self) -> int:
        ttl = int(INTERVAL_TTL.total_seconds())
        members: Any = self._client.smembers(self._index)
        previous = [k.decode() if isinstance(k, bytes) else str(k) for k in members]
        pipe = self._client.pipeline(transaction=True)
        for stale in previous:
            pipe.delete(stale)
        pipe.delete(self._index)
        for name, fields in self._hashes.items():
            pipe.hset(name, mapping=dict(fields))  # type: ignore[arg-type]
            pipe.expire(name, ttl)
        for name, members in self._zsets.items():
            pipe.zadd(name, dict(members))
            pipe.expire(name, ttl)
        if self.keys:
            pipe.sadd(self._index, *self.keys)
            pipe.expire(self._index, ttl)
        pipe.execute()
        return len(self.keys)


def read_graph(
    client: redis.Redis, users: Iterable[int], relations: Iterable[str] = ("following",)
) -> dict[str, dict[int, set[int]]]:
    """Sets of user ids per (relation, user), fetched in one round trip per relation."""
    users = sorted(set(users))
    result: dict[str, dict[int, set[int]]] = {}
    for relation in relations:
        pipe = client.pipeline(transaction=False)
        for user in users:
            pipe.smembers(graph_key(relation, user))
        replies: list[Any] = pipe.execute()
        result[relation] = {
            user: {int(member) for member in members}
            for user, members in zip(users, replies, strict=True)
            if members
        }
    return result


def read_two_hop_following(client: redis.Redis, users: Iterable[int]) -> dict[int, set[int]]:
    """`following` of the users and of everyone they follow (what who-to-follow needs)."""
    first = read_graph(client, users)["following"]
    second_hop = {f for followees in first.values() for f in followees} - set(first)
    first.update(read_graph(client, second_hop)["following"])
    return first
