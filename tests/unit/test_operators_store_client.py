"""The Airflow tasks' store client: TLS from the connection always verifies chain and name."""

from __future__ import annotations

from typing import Any

import pytest

from starling_operators.connection import store_client_kwargs

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "host": "starling-valkey.starling.svc",
    "port": 6379,
    "schema": "0",
    "login": None,
    "password": "pw",
    "conn_type": "redis",
}


@pytest.mark.parametrize(
    ("conn_type", "extra"),
    [
        ("redis", {"ssl": True, "ssl_ca_certs": "/ca.crt"}),
        ("redis", {"ssl": "true", "ssl_ca_certs": "/ca.crt"}),
        ("rediss", {"ssl_ca_certs": "/ca.crt"}),
    ],
)
def test_tls_verifies_the_chain_and_the_host(conn_type: str, extra: dict[str, Any]) -> None:
    kwargs = store_client_kwargs(**{**BASE, "conn_type": conn_type}, extra=extra)
    assert kwargs["ssl"] is True
    assert kwargs["ssl_ca_certs"] == "/ca.crt"
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True


@pytest.mark.parametrize("extra", [{}, {"ssl": "false"}, {"ssl": False}])
def test_plain_only_when_asked(extra: dict[str, Any]) -> None:
    kwargs = store_client_kwargs(**BASE, extra=extra)
    assert "ssl" not in kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (
        "starling-valkey.starling.svc",
        6379,
        0,
    )
