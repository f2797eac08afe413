"""`starling loadgen --store-url`: put the generated users' follow graph and handles in
the store before sending, as a real deployment has them from its user database.

Without them ingestion fans tweets out to nobody and the notifier cannot resolve a
`@u42` mention to user 42 (it looks handles up in `u:handles`), so a local run shows
empty timelines and no mention notifications. Loading is idempotent (set additions and
hash writes), so running the generator again with the same seed and users changes
nothing; the generator's own follow/unfollow interactions then keep the graph current
through the notifier, as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis

from starling.loadgen.model import TrafficGenerator
from starling.store.graph import load_loadgen_graph


class StoreLoadError(RuntimeError):
    """The store could not be reached or written; the message names the fix."""


@dataclass(frozen=True, slots=True)
class StoreLoad:
    users: int
    follows: int
    where: str


def redacted(url: str) -> str:
    """`url` without its password, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def load_users(url: str, generator: TrafficGenerator, timeout_s: float = 10.0) -> StoreLoad:
    """Write `generator`'s follow graph and handle index (`u<n>` -> n) to the store at `url`
    (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS)."""
    where = redacted(url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    except ValueError as error:
        raise StoreLoadError(
            f"--store-url {where!r} is not a store URL ({error}); use redis://HOST:PORT[/DB]"
        ) from None
    try:
        load_loadgen_graph(client, generator)
    except redis.RedisError as error:
        raise StoreLoadError(
            f"could not load users into the store at {where}: {error}"
            " (start the store, or fix --store-url)"
        ) from None
    finally:
        client.close()
    return StoreLoad(generator.config.users, generator.graph.edge_count, where)
