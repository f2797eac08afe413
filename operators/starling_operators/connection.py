"""Clients built from Airflow connections: the Kafka provider's `kafka` connection (its
extra is librdkafka config) and the store connection (`redis://...?ssl=true&ssl_ca_certs=...`
or `rediss://`: TLS, verified).

Airflow is imported inside the functions: this module is imported by task code only, and
unit tests of the pure helpers should not pay for Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starling_operators import settings

if TYPE_CHECKING:
    import redis

# The store is a cache of derived data: a task waits this long for it, then fails clearly.
STORE_TIMEOUT_S = 5.0


def kafka_config(conn_id: str = settings.KAFKA_CONN_ID) -> dict[str, Any]:
    """The connection's librdkafka settings (bootstrap, SASL/TLS, ...), as the provider's
    hooks read them; our bounded timeouts are added by `starling_operators.kafka`."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    extra = dict(connection.extra_dejson)
    if not extra.get("bootstrap.servers"):
        raise ValueError(
            f"Airflow connection {conn_id!r} has no 'bootstrap.servers' in its extra"
            " (expected the kafka connection type: extra = librdkafka config)"
        )
    callbacks = sorted(k for k, v in extra.items() if k.endswith("_cb") and isinstance(v, str))
    if callbacks:
        # The provider resolves dotted-path callbacks through its allow-list; we do not
        # import code named in a connection at all.
        raise ValueError(
            f"Airflow connection {conn_id!r} names callbacks {callbacks}; Starling operators do"
            " not load callbacks from connections"
        )
    return extra


def store_client(conn_id: str = settings.STORE_CONN_ID) -> redis.Redis:
    """A Redis client for the store connection, with bounded socket timeouts."""
    import redis
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    return redis.Redis(
        **store_client_kwargs(
            host=connection.host,
            port=connection.port,
            schema=connection.schema,
            login=connection.login,
            password=connection.password,
            conn_type=connection.conn_type,
            extra=connection.extra_dejson,
        )
    )


def _flag(value: object) -> bool:
    # A URI query gives strings: "false" must not count as true.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def store_client_kwargs(
    *,
    host: str | None,
    port: int | None,
    schema: str | None,
    login: str | None,
    password: str | None,
    conn_type: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """redis-py arguments for the store connection. TLS (`rediss://`, or `ssl` in the extra)
    always verifies the chain (against `ssl_ca_certs`, the internal CA in the cluster) and
    the host name: a store that cannot prove its name gets no password."""
    kwargs: dict[str, Any] = {
        "host": host or "localhost",
        "port": int(port or 6379),
        "db": int(schema or 0),
        "username": login or None,
        "password": password or None,
        "socket_timeout": STORE_TIMEOUT_S,
        "socket_connect_timeout": STORE_TIMEOUT_S,
    }
    if conn_type == "rediss" or _flag(extra.get("ssl", False)):
        kwargs.update(
            {
                "ssl": True,
                "ssl_ca_certs": extra.get("ssl_ca_certs"),
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        )
    return kwargs
