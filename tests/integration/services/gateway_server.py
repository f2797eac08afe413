"""The gateway served for tests: uvicorn in a thread on a free port, with its metrics
server, against a deployment's real broker and store."""

from __future__ import annotations

import threading
from typing import Any

from starling.gateway.server import GatewayServer, build_server
from starling.gateway.settings import GatewaySettings
from starling.runtime.metrics import MetricsServer
from tests.integration.services.helpers import Deployment, wait_for
from tests.tokens import TokenIssuer


class RunningGateway:
    """A gateway served by uvicorn in a thread, on a free port, with its metrics server."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.gateway = server.gateway
        self.metrics = MetricsServer(0, self.gateway.metrics.registry, self.gateway.health)
        self._thread = threading.Thread(target=server.run, name="gateway", daemon=True)

    def __enter__(self) -> RunningGateway:
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
        assert not self._thread.is_alive(), "the gateway did not stop"


def start_gateway(
    deployment: Deployment, issuer: TokenIssuer | None, **settings: Any
) -> RunningGateway:
    """Trusting `issuer`'s tokens, or (issuer None) as `settings` say (header mode)."""
    runtime = deployment.settings("gateway", starling_shutdown_timeout_s=5.0)
    trust = issuer.gateway_settings() if issuer is not None else {}
    options: dict[str, Any] = {"http_host": "127.0.0.1", "http_port": 0, **trust, **settings}
    return RunningGateway(build_server(runtime, GatewaySettings(**options)))
