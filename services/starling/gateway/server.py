"""Running the gateway: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from starling.gateway.app import Gateway
from starling.gateway.settings import GatewaySettings
from starling.runtime.config import RuntimeSettings
from starling.web.server import ServiceServer, bind_http, serve, uvicorn_config


class GatewayServer(ServiceServer):
    """uvicorn, but streams are told to close before it waits for connections to end:
    SSE connections never end on their own, so a plain graceful shutdown would always
    run into its timeout."""

    def __init__(self, gateway: Gateway, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.begin_shutdown()
        await super().shutdown(sockets)


def build_server(
    runtime: RuntimeSettings, settings: GatewaySettings, **gateway_options: Any
) -> GatewayServer:
    gateway = Gateway(runtime, settings, **gateway_options)
    # The TCP peer is what header mode checks against the trusted proxies.
    config = uvicorn_config(gateway.app, runtime, settings, settings.max_header_bytes)
    return GatewayServer(gateway, config)


def run_gateway(runtime: RuntimeSettings, settings: GatewaySettings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server did not start;
    ConfigError if a port is taken."""
    # Bound before the gateway builds its clients: a taken port is then one line.
    listener = bind_http(settings.http_host, settings.http_port)
    try:
        server = build_server(runtime, settings)
    except BaseException:
        listener.close()
        raise
    return serve(
        "gateway",
        server,
        runtime,
        server.gateway.metrics.registry,
        server.gateway.health,
        listener=listener,
    )
