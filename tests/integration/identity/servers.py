"""The identity service served for tests: uvicorn in a thread on a free port, with its
metrics server, against a deployment's real broker and store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import httpx

from starling.identity.server import IdentityServer, build_server
from starling.identity.settings import IdentitySettings
from tests.integration.services.helpers import Deployment
from tests.integration.services.running_service import RunningService

SEED = b"integration-test-seed-0123456789abcdef0123456789abcdef"
ISSUER = "http://identity.test"
PASSWORD = "correct horse battery"
# Cheap Argon2id for tests that hash a lot; one test runs the defaults.
FAST_HASHING: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
}


class RunningIdentity(RunningService):
    """The identity service served by uvicorn in a thread, on a free port, with metrics."""

    def __init__(self, server: IdentityServer) -> None:
        identity = server.identity
        super().__init__("identity service", server, identity.metrics.registry, identity.health)
        self.identity = identity

    def __enter__(self) -> Self:
        super().__enter__()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        super().__exit__(*exc)

    def sign_in(self, username: str, password: str, **extra: Any) -> httpx.Response:
        headers = extra.pop("headers", {})
        body = {"username": username, "password": password, **extra}
        return self.http.post("/v1/sessions", json=body, headers=headers)

    def sign_up(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/v1/accounts", json={"username": username, "password": password})


def start_identity(deployment: Deployment, seed_file: Path, **settings: Any) -> RunningIdentity:
    runtime = deployment.settings("identity", starling_shutdown_timeout_s=5.0)
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "seed_file": seed_file,
        "http_host": "127.0.0.1",
        "http_port": 0,
        **FAST_HASHING,
        **settings,
    }
    return RunningIdentity(build_server(runtime, IdentitySettings(**options)))
