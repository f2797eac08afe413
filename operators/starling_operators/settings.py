"""Names every Starling task agrees on: connection ids, topic names, consumer groups.

Read from the environment at call time (never at import), so one worker image serves
every deployment and tests can point tasks at their own topics with a prefix.
"""

from __future__ import annotations

import os
from functools import cache

# The provider's connection type `kafka`: its extra is the librdkafka config (bootstrap,
# SCRAM/TLS, the login watcher's group). Our operators read the same connection, so
# security settings live in one place.
KAFKA_CONN_ID = "kafka_default"
# A Redis-protocol store (Valkey): `redis://[:password@]host:port/db`.
STORE_CONN_ID = "starling_store"

TOPIC_PREFIX_ENV = "STARLING_TOPIC_PREFIX"
STORE_PREFIX_ENV = "STARLING_STORE_PREFIX"

# Every task's output and failure records name the producer like services do.
SERVICE_NAME = "airflow"


def topic_prefix() -> str:
    return os.environ.get(TOPIC_PREFIX_ENV, "")


def topic(name: str) -> str:
    """The deployed name of catalog topic `name` (a prefix is used by tests sharing a broker)."""
    return topic_prefix() + name


@cache
def group_prefix() -> str:
    """ACLs allow the `airflow` principal consumer groups with this prefix only (looked up
    when first needed: the access map is not needed to parse a DAG file)."""
    from starling.access import principal

    return principal("airflow").consumer_group or "starling-airflow"


def group_id(purpose: str) -> str:
    """A consumer group inside the ACL prefix, one per DAG task family."""
    return f"{group_prefix()}-{purpose}"


def store_prefix() -> str:
    """Key prefix of everything Airflow writes to the store (tests isolate runs with it)."""
    return os.environ.get(STORE_PREFIX_ENV, "starling:airflow")
