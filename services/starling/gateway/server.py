"""Running the gateway: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

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


_HEADER_TOO_LARGE = (
    b'{"error":"header_too_large","reason":"header_too_large","field":null,'
    b'"message":"the request line and headers exceed the gateway\'s limit"}'
)


class GatewayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request whose head passes the size limit with
    a JSON 431 (uvicorn's own answer to every protocol error is a plain-text 400)."""

    def send_400_response(self, msg: str) -> None:
        buffered, _closed = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size
        if limit is None or len(buffered) <= limit or self.conn.our_state is not h11.IDLE:
            super().send_400_response(msg)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"connection", b"close"),
        ]
        response = h11.Response(
            status_code=431, headers=headers, reason=b"Request Header Fields Too Large"
        )
        for event in (response, h11.Data(data=_HEADER_TOO_LARGE), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


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
        # Behind the ingress: client addresses come from its headers only if told so. The
        # TCP peer is what header mode checks against the trusted proxies.
        proxy_headers=False,
        # h11 bounds the request head (httptools does not): past `max_header_bytes` the
        # connection gets a 431 and is closed, whatever the client keeps sending.
        http=GatewayH11Protocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
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
