"""An HTTP service served for tests: uvicorn in a thread on a free port, with its metrics
server beside it, as `starling.web.server.serve` runs them in a pod."""

from __future__ import annotations

import socket
import threading
from typing import Self

from prometheus_client import CollectorRegistry

from starling.runtime.metrics import HealthState, MetricsServer
from starling.web.server import ServiceServer
from tests.integration.services.helpers import wait_for


class RunningService:
    """`server` run in a thread while in the `with` block; `url` and `metrics_url` inside."""

    def __init__(
        self, name: str, server: ServiceServer, registry: CollectorRegistry, health: HealthState
    ) -> None:
        self.name = name
        self.server = server
        self.metrics = MetricsServer(0, registry, health)
        self._thread = threading.Thread(target=server.run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self.metrics.start()
        self._thread.start()
        wait_for(lambda: self.server.started, 20, "uvicorn to start", interval=0.05)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics.port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.metrics.stop()
        assert not self._thread.is_alive(), f"the {self.name} did not stop"


def raw_request(port: int, head: bytes) -> tuple[int, bytes]:
    """Status and body of one request sent as raw bytes (httpx would refuse to send some)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]
