"""Running the gateway: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn

from starling.gateway.app import Gateway
from starling.gateway.settings import GatewaySettings
from starling.runtime.config import RuntimeSettings
from starling.runtime.metrics import MetricsServer

log = logging.getLogger("starling.gateway")


class GatewayServer(uvicorn.Server):
    """uvicorn, but streams are told to close before it waits for connections to end:
    SSE connections never end on their own, so a plain graceful shutdown would always
    run into its timeout."""

    def __init__(self, gateway: Gateway, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.begin_shutdown()
        await super().shutdown(sockets)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only after `started`."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def build_server(
    runtime: RuntimeSettings, settings: GatewaySettings, **gateway_options: Any
) -> GatewayServer:
    gateway = Gateway(runtime, settings, **gateway_options)
    config = uvicorn.Config(
        gateway.app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        # Request logs belong in metrics, not in a line per request.
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(runtime.starling_shutdown_timeout_s),
        # Behind the ingress: client addresses come from its headers only if told so.
        proxy_headers=False,
    )
    return GatewayServer(gateway, config)


def run_gateway(runtime: RuntimeSettings, settings: GatewaySettings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server did not start."""
    server = build_server(runtime, settings)
    metrics = MetricsServer(
        runtime.metrics_port, server.gateway.metrics.registry, server.gateway.health
    )
    metrics.start()

    def quietly(signum: int, _frame: FrameType | None) -> None:
        # uvicorn re-raises the signal it stopped for once it is done, to the handler it
        # found: this one, so a graceful stop exits 0 rather than dying by the signal.
        log.info("gateway: stopped after %s", signal.strsignal(signum))

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, quietly)
        signal.signal(signal.SIGINT, quietly)
    log.info(
        "gateway: HTTP on %s:%d, metrics on %d",
        settings.http_host,
        settings.http_port,
        metrics.port,
    )
    try:
        server.run()
    finally:
        metrics.stop()
    return 0 if server.started else 1
