"""Running the identity service: uvicorn for the API, the shared metrics/probe server beside it."""

from __future__ import annotations

from typing import Any

import uvicorn

from starling.identity.app import MAX_HEADER_BYTES, Identity
from starling.identity.settings import IdentitySettings
from starling.runtime.config import RuntimeSettings
from starling.web.server import ServiceServer, serve, uvicorn_config


class IdentityServer(ServiceServer):
    def __init__(self, identity: Identity, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.identity = identity


def build_server(
    runtime: RuntimeSettings, settings: IdentitySettings, **identity_options: Any
) -> IdentityServer:
    identity = Identity(runtime, settings, **identity_options)
    # Client addresses come from X-Forwarded-For only through STARLING_IDENTITY_
    # TRUSTED_PROXIES (`starling.identity.addresses`).
    config = uvicorn_config(identity.app, runtime, settings, MAX_HEADER_BYTES)
    return IdentityServer(identity, config)


def run_identity(runtime: RuntimeSettings, settings: IdentitySettings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server did not start."""
    server = build_server(runtime, settings)
    return serve(
        "identity", server, runtime, server.identity.metrics.registry, server.identity.health
    )
