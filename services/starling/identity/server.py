"""Running the identity service: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn

from starling.identity.app import MAX_HEADER_BYTES, Identity
from starling.identity.settings import IdentitySettings
from starling.runtime.config import RuntimeSettings
from starling.runtime.metrics import MetricsServer

log = logging.getLogger("starling.identity")


class IdentityServer(uvicorn.Server):
    def __init__(self, identity: Identity, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.identity = identity

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only after `started`."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def build_server(
    runtime: RuntimeSettings, settings: IdentitySettings, **identity_options: Any
) -> IdentityServer:
    identity = Identity(runtime, settings, **identity_options)
    config = uvicorn.Config(
        identity.app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        # Request lines carry no secrets here, but a per-request log line is metrics' job.
        access_log=False,
        log_config=None,
        http="h11",
        # Headers trickling in are bounded here (400); whole ones by the app (431).
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=int(runtime.starling_shutdown_timeout_s),
        # Client addresses come from X-Forwarded-For only through STARLING_IDENTITY_
        # TRUSTED_PROXIES (`starling.identity.addresses`), never from uvicorn's own rules.
        proxy_headers=False,
    )
    return IdentityServer(identity, config)


def run_identity(runtime: RuntimeSettings, settings: IdentitySettings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server did not start."""
    server = build_server(runtime, settings)
    metrics = MetricsServer(
        runtime.metrics_port, server.identity.metrics.registry, server.identity.health
    )
    metrics.start()

    def quietly(signum: int, _frame: FrameType | None) -> None:
        # uvicorn re-raises the signal it stopped for once it is done, to the handler it
        # found: this one, so a graceful stop exits 0 rather than dying by the signal.
        log.info("identity: stopped after %s", signal.strsignal(signum))

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, quietly)
        signal.signal(signal.SIGINT, quietly)
    log.info(
        "identity: HTTP on %s:%d, metrics on %d",
        settings.http_host,
        settings.http_port,
        metrics.port,
    )
    try:
        server.run()
    finally:
        metrics.stop()
    return 0 if server.started else 1
