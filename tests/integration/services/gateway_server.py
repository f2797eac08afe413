"""The gateway served for tests: uvicorn in a thread on a free port, with its metrics
server, against a deployment's real broker and store."""

from __future__ import annotations

from typing import Any

from starling.gateway.server import GatewayServer, build_server
from starling.gateway.settings import GatewaySettings
from tests.integration.services.helpers import Deployment
from tests.integration.services.running_service import RunningService
from tests.tokens import TokenIssuer


class RunningGateway(RunningService):
    """A gateway served by uvicorn in a thread, on a free port, with its metrics server."""

    def __init__(self, server: GatewayServer) -> None:
        super().__init__("gateway", server, server.gateway.metrics.registry, server.gateway.health)
        self.gateway = server.gateway


def start_gateway(
    deployment: Deployment, issuer: TokenIssuer | None, **settings: Any
) -> RunningGateway:
    """Trusting `issuer`'s tokens, or (issuer None) as `settings` say (header mode)."""
    runtime = deployment.settings("gateway", starling_shutdown_timeout_s=5.0)
    trust = issuer.gateway_settings() if issuer is not None else {}
    options: dict[str, Any] = {"http_host": "127.0.0.1", "http_port": 0, **trust, **settings}
    return RunningGateway(build_server(runtime, GatewaySettings(**options)))
