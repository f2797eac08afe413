"""The checked-in OpenAPI document describes exactly the app's routes, and its examples
are valid under its own schemas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from starling.identity.app import Identity
from starling.identity.settings import IdentitySettings
from starling.runtime.config import RuntimeSettings
from tests.unit.identity.openapi_support import DOCUMENT, pointer, validator_at

pytestmark = pytest.mark.unit

SEED = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[Identity]:
    seed = tmp_path / "seed"
    seed.write_bytes(SEED)
    # Nothing listens there: building the app touches neither Kafka nor the store.
    runtime = RuntimeSettings(starling_service="identity", kafka_bootstrap_servers="127.0.0.1:1")
    settings = IdentitySettings(
        issuer="https://identity.example",
        seed_file=seed,
        argon2_time_cost=1,
        argon2_memory_kib=64,
        argon2_parallelism=1,
    )
    identity = Identity(runtime, settings, producer_overrides={"log_level": 0})
    yield identity
    identity.producer.close(0.1)
    identity.store.close()


def test_paths_and_methods_are_the_apps_routes(identity: Identity) -> None:
    served = set()
    for route in identity.app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                served.add((route.path, method.lower()))
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented == served


def test_the_document_is_openapi_3_1_with_unique_operation_ids() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    ids = [op["operationId"] for item in DOCUMENT["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def examples() -> Iterator[tuple[str, Any]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {})
            for media_type, content in body.items():
                if "example" in content:
                    yield (
                        pointer("paths", path, method, "requestBody", "content", media_type),
                        content["example"],
                    )
            for status, response in operation["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    if "example" in content:
                        where = pointer(
                            "paths", path, method, "responses", status, "content", media_type
                        )
                        yield where, content["example"]


EXAMPLES = list(examples())


def test_every_json_response_has_an_example() -> None:
    with_examples = {where for where, _ in EXAMPLES}
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                for media_type in response.get("content", {}):
                    if path == "/openapi.json":
                        continue  # the example would be the document itself
                    where = pointer(
                        "paths", path, method, "responses", status, "content", media_type
                    )
                    assert where in with_examples, f"no example at {where}"


@pytest.mark.parametrize(("where", "example"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_examples_validate_against_their_schema(where: str, example: Any) -> None:
    validator_at(where + "/schema").validate(example)


def test_the_schemas_reject_what_the_app_rejects() -> None:
    # The document is a contract, not decoration: it must refuse bodies the app refuses.
    sign_in = validator_at(pointer("components", "schemas", "SignInRequest"))
    assert sign_in.is_valid({"username": "alice", "password": "x"})
    assert not sign_in.is_valid({"username": "alice"})
    assert not sign_in.is_valid({"username": "al ice", "password": "x"})
    assert not sign_in.is_valid({"username": "alice", "password": "x", "extra": 1})
    assert not sign_in.is_valid({"username": "alice", "password": "x", "platform": "tv"})
    sign_up = validator_at(pointer("components", "schemas", "SignUpRequest"))
    assert not sign_up.is_valid({"username": "alice", "password": "short"})
    error = validator_at(pointer("components", "schemas", "Error"))
    assert not error.is_valid({"error": "x", "message": "y"})


def test_the_app_serves_the_checked_in_document(identity: Identity) -> None:
    # No lifespan: the document is served without Kafka or the store.
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=identity.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            return await client.get("/openapi.json")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT
