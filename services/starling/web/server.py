"""Running an HTTP service: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from starling.runtime.config import ConfigError, RuntimeSettings
from starling.runtime.metrics import HealthState, MetricsServer, port_taken_message
from starling.web.heads import HeadLimitH11Protocol
from starling.web.settings import HttpSettings


class ServiceServer(uvicorn.Server):
    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only after `started`."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def uvicorn_config(
    app: ASGIApp, runtime: RuntimeSettings, settings: HttpSettings, max_header_bytes: int
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        # Request logs belong in metrics, not in a line per request.
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(runtime.starling_shutdown_timeout_s),
        # Client addresses come from the TCP peer and each service's own trusted-proxy
        # rules, never from uvicorn's reading of forwarding headers.
        proxy_headers=False,
        # h11 bounds the request head (httptools does not): past `max_header_bytes` the
        # connection gets a JSON 431 and is closed, whatever the client keeps sending.
        # A head arriving whole is bounded by `heads.HeadSizeLimit` in the app.
        http=HeadLimitH11Protocol,
        h11_max_incomplete_event_size=max_header_bytes,
    )


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound as uvicorn would; ConfigError naming HTTP_PORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ConfigError(port_taken_message("HTTP_PORT", port, error)) from None
    listener.set_inheritable(True)
    return listener


def serve(
    name: str,
    server: ServiceServer,
    runtime: RuntimeSettings,
    registry: CollectorRegistry,
    health: HealthState,
    listener: socket.socket | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server did not start.
    ConfigError if the HTTP or metrics port cannot be bound."""
    log = logging.getLogger(f"starling.{name}")
    # Both ports are bound before anything starts: uvicorn's own bind failure exits from
    # inside `run` (after the app started its clients), bypassing our exit codes.
    if listener is None:
        listener = bind_http(server.config.host, server.config.port)
    try:
        metrics = MetricsServer(runtime.metrics_port, registry, health)
    except BaseException:
        listener.close()
        raise
    metrics.start()

    def quietly(signum: int, _frame: FrameType | None) -> None:
        # uvicorn re-raises the signal it stopped for once it is done, to the handler it
        # found: this one, so a graceful stop exits 0 rather than dying by the signal.
        log.info("%s: stopped after %s", name, signal.strsignal(signum))

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, quietly)
        signal.signal(signal.SIGINT, quietly)
    log.info(
        "%s: HTTP on %s:%d, metrics on %d",
        name,
        server.config.host,
        listener.getsockname()[1],
        metrics.port,
    )
    try:
        server.run(sockets=[listener])
    finally:
        metrics.stop()
    return 0 if server.started else 1
