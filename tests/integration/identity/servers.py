"""The identity service served for tests: uvicorn in a thread on a free port, with its
metrics server, against a deployment's real broker and store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from starling.identity.server import IdentityServer, build_server
from starling.identity.settings import IdentitySettings
from starling.runtime.metrics import MetricsServer
from tests.integration.services.helpers import Deployment, wait_for

SEED = b"integration-test-seed-0123456789abcdef0123456789abcdef"
ISSUER = "http://identity.test"
PASSWORD = "correct horse battery"
# Cheap Argon2id for tests that hash a lot; one test runs the defaults.
FAST_HASHING: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
}


class RunningIdentity:
    """The identity service served by uvicorn in a thread, on a free port, with metrics."""

    def __init__(self, server: IdentityServer) -> None:
        self.server = server
        self.identity = server.identity
        self.metrics = MetricsServer(0, self.identity.metrics.registry, self.identity.health)
        self._thread = threading.Thread(target=server.run, name="identity", daemon=True)

    def __enter__(self) -> RunningIdentity:
        self.metrics.start()
        self._thread.start()
        wait_for(lambda: self.server.started, 20, "uvicorn to start", interval=0.05)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self._thread.join(30)
        self.metrics.stop()
        assert not self._thread.is_alive(), "the identity service did not stop"

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
