"""CORS at the identity service: only the listed origins (the live page's) may call it
from a browser with credentials; with none listed, no CORS header is ever sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from starling.identity.app import Identity
from starling.identity.settings import IdentitySettings
from starling.runtime.config import ConfigError, RuntimeSettings, load_settings

pytestmark = pytest.mark.unit

SEED = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
PAGE = "http://127.0.0.1:8080"


@pytest.fixture
def make_identity(tmp_path: Path) -> Iterator[Callable[..., Identity]]:
    seed = tmp_path / "seed"
    seed.write_bytes(SEED)
    built: list[Identity] = []

    def make(**settings: Any) -> Identity:
        # Nothing listens there: preflights and documents touch neither Kafka nor the store.
        runtime = RuntimeSettings(
            starling_service="identity", kafka_bootstrap_servers="127.0.0.1:1", store_port=1
        )
        options = IdentitySettings(issuer="https://identity.example", seed_file=seed, **settings)
        identity = Identity(runtime, options, producer_overrides={"log_level": 0})
        built.append(identity)
        return identity

    yield make
    for identity in built:
        identity.producer.close(0.1)
        identity.store.close()


def send(identity: Identity, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=identity.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def preflight(identity: Identity, origin: str) -> httpx.Response:
    return send(
        identity,
        "OPTIONS",
        "/v1/sessions",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_listed_origin_gets_credentialed_cors(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity(allowed_origins=[PAGE])
    answer = preflight(identity, PAGE)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "content-type" in answer.headers["access-control-allow-headers"].lower()
    # A simple (non-preflighted) response carries the headers too, for that origin only.
    document = send(identity, "GET", "/openapi.json", {"Origin": PAGE})
    assert document.headers["access-control-allow-origin"] == PAGE
    assert document.headers["access-control-allow-credentials"] == "true"


def test_unlisted_origin_is_refused(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity(allowed_origins=[PAGE])
    answer = preflight(identity, "http://evil.example")
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    document = send(identity, "GET", "/openapi.json", {"Origin": "http://evil.example"})
    assert document.status_code == 200
    assert "access-control-allow-origin" not in document.headers


def test_no_origin_listed_means_no_cors_at_all(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity()
    answer = preflight(identity, PAGE)
    assert "access-control-allow-origin" not in answer.headers
    assert answer.status_code == 405  # no CORS layer: OPTIONS is not a route
    document = send(identity, "GET", "/openapi.json", {"Origin": PAGE})
    assert "access-control-allow-origin" not in document.headers


def test_origins_setting_is_comma_separated_and_validated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    seed.write_bytes(SEED)
    monkeypatch.setenv("STARLING_IDENTITY_ISSUER", "https://identity.example")
    monkeypatch.setenv("STARLING_IDENTITY_SEED_FILE", str(seed))
    monkeypatch.delenv("STARLING_IDENTITY_ALLOWED_ORIGINS", raising=False)
    assert load_settings(IdentitySettings).allowed_origins == []
    monkeypatch.setenv(
        "STARLING_IDENTITY_ALLOWED_ORIGINS", "http://127.0.0.1:8080, HTTPS://Starling.Example"
    )
    assert load_settings(IdentitySettings).allowed_origins == [
        "http://127.0.0.1:8080",
        "https://starling.example",
    ]
    for bad in ("*", "http://127.0.0.1:8080/", "127.0.0.1:8080", "http://h/x?y"):
        monkeypatch.setenv("STARLING_IDENTITY_ALLOWED_ORIGINS", bad)
        with pytest.raises(ConfigError, match=r"STARLING_IDENTITY_ALLOWED_ORIGINS|allowed_origins"):
            load_settings(IdentitySettings)
