"""Gateway unit fixtures: the app driven in-process (no uvicorn, no lifespan, so no
feeds), trusting a real token issuer that serves its JWKS on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from starling.gateway.app import Gateway
from starling.gateway.settings import GatewaySettings
from starling.runtime.config import RuntimeSettings
from tests.tokens import TokenIssuer


class Client:
    """Requests straight into the ASGI app, from `peer` (the TCP client address)."""

    def __init__(self, gateway: Gateway, peer: str = "127.0.0.1") -> None:
        self.gateway = gateway
        self.peer = peer

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.gateway.app, client=(self.peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.request(method, path, **options)

        return asyncio.run(send())

    def concurrently(self, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
        """Several requests at once on one event loop, as a served gateway sees them."""

        async def send() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=self.gateway.app, client=(self.peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return list(
                    await asyncio.gather(
                        *(
                            http.request(method, path, **options)
                            for method, path, options in requests
                        )
                    )
                )

        return asyncio.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.start() as running:
        yield running


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Client for a gateway with these settings. Nothing listens at the Kafka and store
    addresses: every case must be answered before the gateway would talk to them."""
    gateways: list[Gateway] = []

    def make(peer: str = "127.0.0.1", **settings: Any) -> Client:
        runtime = RuntimeSettings(
            starling_service="gateway", kafka_bootstrap_servers="127.0.0.1:1", store_port=1
        )
        gateway = Gateway(runtime, GatewaySettings(**settings), producer_overrides={"log_level": 0})
        gateways.append(gateway)
        return Client(gateway, peer)

    yield make
    for gateway in gateways:
        gateway.store.close()


@pytest.fixture
def client(issuer: TokenIssuer, make_client: Callable[..., Client]) -> Client:
    return make_client(**issuer.gateway_settings())
