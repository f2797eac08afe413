"""The built-in identity service and the gateway together, as deployed: a user signs in at
the identity service, the gateway verifies the token against the keys the identity service
publishes, key rotation keeps signed-in users signed in, and sign-out is honoured by the
gateway within seconds. Real broker, real store, both services over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from starling.gateway.server import build_server
from starling.gateway.settings import GatewaySettings
from starling.harness._process import free_ports
from starling.identity.contract import JWKS_PATH, SESSION_COOKIE
from tests.integration.identity.servers import ISSUER, RunningIdentity, start_identity
from tests.integration.services.gateway_server import RunningGateway
from tests.integration.services.helpers import Deployment, new_prefix, wait_for

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

DEV_PASSWORD = "starling-dev-password"
RECHECK_S = 0.5


@pytest.fixture
def deployment(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis
) -> Deployment:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


def identity_on(
    deployment: Deployment, seed: Path, port: int, signing_keys: list[str]
) -> RunningIdentity:
    """The identity service on a fixed port, so the gateway's JWKS URL stays valid across
    the restart a key rotation is."""
    return start_identity(
        deployment,
        seed,
        http_port=port,
        dev_mode=True,
        demo_users=100,
        signing_keys=signing_keys,
    )


def sign_in(identity: RunningIdentity, user: int) -> tuple[str, str]:
    """(token, session cookie value) for demo user `user`."""
    answer = identity.sign_in(f"u{user}", DEV_PASSWORD)
    assert answer.status_code == 201, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=strict" in cookie.lower()
    value = cookie.split(";", 1)[0].removeprefix(f"{SESSION_COOKIE}=")
    token = answer.json()["access_token"]
    assert value == token
    return token, value


def timeline(gateway: RunningGateway, user: int, **headers: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/v1/users/{user}/timeline", headers=headers, timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_identity_tokens_at_the_gateway_through_rotation_and_sign_out(
    deployment: Deployment, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    seed.write_bytes(b"signed-in-gateway-test-seed-0123456789abcdef012345")
    (port,) = free_ports(1)
    gateway_settings: dict[str, Any] = {
        "auth": "token",
        # The issuer clients see and the address the gateway fetches keys from differ, as
        # in a cluster (public URL vs the in-cluster Service).
        "issuer": ISSUER,
        "audience": "starling",
        "jwks_url": f"http://127.0.0.1:{port}{JWKS_PATH}",
        "revocation": "store",
        "revocation_recheck_s": RECHECK_S,
        "jwks_min_refetch_s": 0.5,
    }
    runtime = deployment.settings("gateway", starling_shutdown_timeout_s=5.0)
    settings = GatewaySettings(http_host="127.0.0.1", http_port=0, **gateway_settings)
    with RunningGateway(build_server(runtime, settings)) as gateway:
        with identity_on(deployment, seed, port, ["k1"]) as identity:
            before_rotation, cookie = sign_in(identity, 7)
            assert jwt.get_unverified_header(before_rotation)["kid"] == "k1"
            assert timeline(gateway, 7, **bearer(before_rotation)).status_code == 200
            # The browser path: the same token in the session cookie.
            by_cookie = timeline(gateway, 7, Cookie=f"{SESSION_COOKIE}={cookie}")
            assert by_cookie.status_code == 200
            # Signed in is not signed in as anyone.
            other = timeline(gateway, 8, **bearer(before_rotation))
            assert other.status_code == 403
            assert other.json()["reason"] == "not_your_resource"
            assert timeline(gateway, 7).json()["reason"] == "missing"

        # Rotation, second roll: k2 signs, k1 is still published (docs/identity.md).
        with identity_on(deployment, seed, port, ["k2", "k1"]) as identity:
            after_rotation, _ = sign_in(identity, 7)
            assert jwt.get_unverified_header(after_rotation)["kid"] == "k2"
            # The gateway has never seen k2: it refetches the key set and accepts it, and
            # the token signed before the rotation still works.
            wait_for(
                lambda: timeline(gateway, 7, **bearer(after_rotation)).status_code == 200,
                5,
                "the gateway to learn the new key",
            )
            assert timeline(gateway, 7, **bearer(before_rotation)).status_code == 200

            # Sign-out of one session: honoured within the recheck interval, the other
            # session of the same user stays signed in.
            signed_out = identity.http.delete(
                "/v1/sessions/current", headers=bearer(after_rotation)
            )
            assert signed_out.status_code == 204, signed_out.text
            started = time.monotonic()
            wait_for(
                lambda: timeline(gateway, 7, **bearer(after_rotation)).status_code == 401,
                RECHECK_S + 3,
                "the gateway to refuse the signed-out session",
                interval=0.05,
            )
            took = time.monotonic() - started
            refused = timeline(gateway, 7, **bearer(after_rotation))
            assert refused.json()["reason"] == "revoked"
            assert timeline(gateway, 7, **bearer(before_rotation)).status_code == 200
            print(f"sign-out honoured by the gateway after {took:.2f} s (recheck {RECHECK_S} s)")

        # A token of another stack (another seed, same key ids and issuer) is refused.
        other_seed = tmp_path / "other-seed"
        other_seed.write_bytes(b"a-different-stack-seed-0123456789abcdef0123456789")
        (other_port,) = free_ports(1)
        with identity_on(deployment, other_seed, other_port, ["k2", "k1"]) as impostor:
            forged, _ = sign_in(impostor, 7)
        refused = timeline(gateway, 7, **bearer(forged))
        assert refused.status_code == 401
        assert refused.json()["reason"] == "bad_signature"
