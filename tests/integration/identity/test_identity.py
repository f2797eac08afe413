"""The identity service against a real broker and a real Redis: accounts, sessions,
limits, the login facts on the real topic, and its bounds on bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest

from starling.events import LoginOutcome, Platform, UserLogin, decode
from starling.harness._process import free_ports
from starling.identity.accounts import DEV_PASSWORD, FIRST_SIGNUP_ID
from starling.identity.contract import DISCOVERY_PATH, SESSION_COOKIE
from starling.store import keys
from starling.topics import LOGINS
from tests.integration.identity.servers import (
    ISSUER,
    PASSWORD,
    SEED,
    start_identity,
)
from tests.integration.services.helpers import (
    Deployment,
    new_prefix,
    read_topic,
    service_command,
    wait_for,
)
from tests.integration.services.running_service import raw_request
from tests.unit.identity.openapi_support import assert_documented

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed"
    path.write_bytes(SEED)
    return path


@pytest.fixture
def deployment(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis
) -> Deployment:
    # `redis_client` flushes the store: limits and accounts start empty in every test.
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


def logins(kafka: KafkaCluster, deployment: Deployment, expected: int) -> list[UserLogin]:
    messages = read_topic(kafka, deployment.topic(LOGINS), expected=expected, timeout=30)
    events = [decode(message.value()) for message in messages]
    assert all(isinstance(event, UserLogin) for event in events)
    for message, event in zip(messages, events, strict=True):
        assert message.key() == event.partition_key()
    return events  # type: ignore[return-value]


def test_sign_up_sign_in_and_the_token_verifies_against_the_published_keys(
    deployment: Deployment, seed_file: Path, kafka: KafkaCluster, redis_client: redis.Redis
) -> None:
    with start_identity(deployment, seed_file, signup=True) as running:
        wait_for(running.identity.health.ready, 20, "readiness")
        created = running.sign_up("Alice")
        assert created.status_code == 201, created.text
        assert created.json() == {"user_id": FIRST_SIGNUP_ID, "username": "Alice"}
        assert_documented("/v1/accounts", "POST", 201, created.json())
        second = running.sign_up("bob")
        assert second.json()["user_id"] == FIRST_SIGNUP_ID + 1
        # Names are case-insensitive; generator names are reserved; short passwords refused.
        taken = [running.sign_up("ALICE"), running.sign_up("u5"), running.sign_up("carol", "short")]
        assert [r.status_code for r in taken] == [409, 409, 400]
        assert [r.json()["error"] for r in taken] == ["taken", "taken", "invalid"]
        assert taken[2].json()["field"] == "$.password"
        for response in taken:
            assert_documented("/v1/accounts", "POST", response.status_code, response.json())
        # The new name resolves as a handle (mentions of @alice reach the account).
        assert redis_client.hget(keys.HANDLES, "alice") == str(FIRST_SIGNUP_ID).encode()
        stored = redis_client.hgetall(keys.identity_account("alice"))
        assert stored[b"hash"].startswith(b"$argon2id$")
        assert PASSWORD.encode() not in b"".join(stored.values())

        started = time.monotonic()
        signed_in = running.sign_in(
            "alice",
            PASSWORD,
            device_id="laptop-1",
            platform="web",
            headers={"user-agent": "pytest-agent/1"},
        )
        elapsed = time.monotonic() - started
        assert signed_in.status_code == 201, signed_in.text
        session = signed_in.json()
        assert_documented("/v1/sessions", "POST", 201, session)
        assert session["token_type"] == "Bearer" and session["expires_in"] == 3600
        assert session["user_id"] == FIRST_SIGNUP_ID
        assert signed_in.headers["cache-control"] == "no-store"
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}={session['access_token']};")
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/", "Max-Age=3600"):
            assert attribute in cookie

        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert 'starling_identity_signin_attempts_total{outcome="succeeded"} 1.0' in metrics
        assert "starling_identity_signups_total 2.0" in metrics

    (login,) = logins(kafka, deployment, expected=1)
    assert login.schema_version == 2
    assert login.outcome is LoginOutcome.SUCCEEDED and login.success
    assert (login.user_id, login.username) == (FIRST_SIGNUP_ID, "alice")
    assert login.ip == "127.0.0.1" and login.country is None
    assert login.user_agent == "pytest-agent/1"
    assert (login.device_id, login.platform) == ("laptop-1", Platform.WEB)
    print(f"sign-in (Argon2id verify + acked login) answered in {elapsed * 1000:.1f} ms")


def test_tokens_verify_the_way_the_gateway_verifies_them(
    deployment: Deployment, seed_file: Path
) -> None:
    with start_identity(
        deployment, seed_file, dev_mode=True, demo_users=5, signing_keys=["k2", "k1"]
    ) as running:
        session = running.sign_in("u1", DEV_PASSWORD).json()
        # Verified the way the gateway does: discovery -> jwks_uri -> key by kid.
        discovery = running.http.get(DISCOVERY_PATH).json()
        assert_documented(DISCOVERY_PATH, "GET", 200, discovery)
        assert discovery["issuer"] == ISSUER
        assert discovery["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
        jwks_response = running.http.get("/.well-known/jwks.json")
        assert jwks_response.headers["content-type"] == "application/jwk-set+json"
        assert_documented(
            "/.well-known/jwks.json", "GET", 200, jwks_response.json(), "application/jwk-set+json"
        )
        key_set = jwt.PyJWKSet.from_dict(jwks_response.json())
        token = session["access_token"]
        kid = jwt.get_unverified_header(token)["kid"]
        claims = jwt.decode(
            token, key_set[kid].key, algorithms=["EdDSA"], issuer=ISSUER, audience="starling"
        )
        assert claims["sub"] == "1"
        assert claims["sid"] == session["session_id"]
        assert claims["preferred_username"] == "u1"
        assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
        assert [key.key_id for key in key_set.keys] == ["k2", "k1"] and kid == "k2"


def test_sign_up_is_off_by_default(deployment: Deployment, seed_file: Path) -> None:
    with start_identity(deployment, seed_file) as running:
        refused = running.sign_up("alice")
        assert refused.status_code == 403
        assert refused.json()["error"] == "signup_disabled"
        assert_documented("/v1/accounts", "POST", 403, refused.json())


def test_wrong_password_and_unknown_account_look_the_same_and_are_both_recorded(
    deployment: Deployment, seed_file: Path, kafka: KafkaCluster
) -> None:
    with start_identity(deployment, seed_file, signup=True) as running:
        user_id = running.sign_up("alice").json()["user_id"]
        wrong = running.sign_in("alice", "not the password")
        unknown = running.sign_in("nobody", PASSWORD)
        for response in (wrong, unknown):
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert_documented("/v1/sessions", "POST", 401, response.json())
            assert "set-cookie" not in response.headers
        assert wrong.json() == unknown.json()
        assert wrong.json()["error"] == "invalid_credentials"

    events = logins(kafka, deployment, expected=2)
    by_name = {event.username: event for event in events}
    assert by_name["alice"].outcome is LoginOutcome.BAD_PASSWORD
    assert by_name["alice"].user_id == user_id and not by_name["alice"].success
    assert by_name["nobody"].outcome is LoginOutcome.UNKNOWN_ACCOUNT
    assert by_name["nobody"].user_id is None
    assert by_name["nobody"].partition_key() == b"name:nobody"


def test_sign_in_is_limited_per_account_with_retry_after(
    deployment: Deployment, seed_file: Path, kafka: KafkaCluster
) -> None:
    window_s = 3
    with start_identity(
        deployment, seed_file, signup=True, signin_per_account=3, signin_window_s=window_s
    ) as running:
        user_id = running.sign_up("alice").json()["user_id"]
        first_attempt = time.monotonic()
        statuses = [running.sign_in("alice", f"guess-{n}").status_code for n in range(3)]
        assert statuses == [401, 401, 401]
        # Limited now, even with the right password, and whatever the case of the name.
        limited = [running.sign_in("alice", PASSWORD), running.sign_in("ALICE", "guess")]
        # Retry-After counts from the answer: the last one came by now.
        told_at = time.monotonic()
        for response in limited:
            assert response.status_code == 429, response.text
            assert response.json()["error"] == "rate_limited"
            assert response.json()["reason"] == "account"
            assert_documented("/v1/sessions", "POST", 429, response.json())
            retry_after = int(response.headers["retry-after"])
            assert 1 <= retry_after <= window_s
        # Another account from the same address is not affected.
        assert running.sign_in("bob", "guess").status_code == 401
        # Retry-After is when the oldest attempt leaves the window: then one gets in again.
        # The oldest attempt is the first one.
        assert retry_after <= math.ceil(window_s - (told_at - first_attempt)) + 1
        time.sleep(max(0.0, told_at + retry_after - time.monotonic()) + 0.1)
        admitted = running.sign_in("alice", PASSWORD)
        assert admitted.status_code == 201, admitted.text
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert 'starling_identity_rate_limited_total{scope="account"} 2.0' in metrics

    events = logins(kafka, deployment, expected=7)
    outcomes = [(e.username.lower(), e.outcome) for e in events if e.username]
    assert outcomes.count(("alice", LoginOutcome.BAD_PASSWORD)) == 3
    assert outcomes.count(("alice", LoginOutcome.RATE_LIMITED)) == 2
    assert outcomes.count(("alice", LoginOutcome.SUCCEEDED)) == 1
    limited_events = [e for e in events if e.outcome is LoginOutcome.RATE_LIMITED]
    # Refused before any password check, yet attributed to the account.
    assert {e.user_id for e in limited_events} == {user_id}
    assert {e.failure_reason for e in limited_events} == {"account_limit"}


def test_sign_in_is_limited_per_client_address_through_trusted_proxies(
    deployment: Deployment, seed_file: Path, kafka: KafkaCluster
) -> None:
    with start_identity(
        deployment,
        seed_file,
        signin_per_address=4,
        # The test client connects from 127.0.0.1: it plays the trusted ingress.
        trusted_proxies=["127.0.0.0/8"],
    ) as running:

        def attempt(name: str, client: str) -> httpx.Response:
            headers = {"x-forwarded-for": f"6.6.6.6, {client}", "x-client-country": "NL"}
            return running.sign_in(name, "guess", headers=headers)

        # One address tries many names: the address limit stops it.
        statuses = [attempt(f"name{n}", "198.51.100.7").status_code for n in range(5)]
        assert statuses == [401, 401, 401, 401, 429]
        refused = attempt("name9", "198.51.100.7")
        assert refused.json()["reason"] == "address"
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        # Another client behind the same proxy is not affected.
        assert attempt("name0", "198.51.100.8").status_code == 401

    events = logins(kafka, deployment, expected=7)
    assert {e.ip for e in events} == {"198.51.100.7", "198.51.100.8"}
    assert {e.country for e in events} == {"NL"}
    limited = [e for e in events if e.outcome is LoginOutcome.RATE_LIMITED]
    assert [(e.ip, e.failure_reason, e.user_id) for e in limited] == [
        ("198.51.100.7", "address_limit", None)
    ] * 2


def test_sign_out_revokes_the_session_until_its_tokens_expire(
    deployment: Deployment, seed_file: Path, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with start_identity(deployment, seed_file, signup=True, token_ttl_s=600) as running:
        running.sign_up("alice")
        by_bearer = running.sign_in("alice", PASSWORD).json()
        by_cookie = running.sign_in("alice", PASSWORD).json()
        assert by_bearer["session_id"] != by_cookie["session_id"]

        headers = {"authorization": f"Bearer {by_bearer['access_token']}"}
        signed_out = running.http.delete("/v1/sessions/current", headers=headers)
        assert signed_out.status_code == 204, signed_out.text
        assert_documented("/v1/sessions/current", "DELETE", 204)
        cleared = signed_out.headers["set-cookie"]
        assert cleared.startswith(f'{SESSION_COOKIE}="";') and "Max-Age=0" in cleared
        revoked = keys.revoked_session(by_bearer["session_id"])
        assert redis_client.get(revoked) == b"1"
        assert 590 <= redis_client.ttl(revoked) <= 600
        # The other session is untouched until it signs out too (with the cookie).
        assert not redis_client.exists(keys.revoked_session(by_cookie["session_id"]))
        cookie = {SESSION_COOKIE: by_cookie["access_token"]}
        with httpx.Client(base_url=running.url, cookies=cookie) as browser:
            assert browser.delete("/v1/sessions/current").status_code == 204
        assert redis_client.exists(keys.revoked_session(by_cookie["session_id"]))

        # Tokens this service cannot vouch for are refused, naming the reason.
        other_seed = tmp_path / "other-seed"
        other_seed.write_bytes(b"another seed, at least thirty-two bytes long")
        from starling.identity.keys import KeyRing, read_seed

        forged = KeyRing(read_seed(other_seed), ["k1"]).sign(
            jwt.decode(by_bearer["access_token"], options={"verify_signature": False})
        )
        cases = {
            "missing": {},
            "malformed": {"authorization": "Basic YWxpY2U6eA=="},
            "bad_signature": {"authorization": f"Bearer {forged}"},
        }
        for reason, case_headers in cases.items():
            response = running.http.delete("/v1/sessions/current", headers=case_headers)
            assert response.status_code == 401
            assert response.json()["reason"] == reason
            assert f'error_description="{reason}"' in response.headers["www-authenticate"]
            assert_documented("/v1/sessions/current", "DELETE", 401, response.json())


def test_demo_users_sign_in_with_the_dev_password_only_in_dev_mode(
    deployment: Deployment, seed_file: Path, kafka: KafkaCluster
) -> None:
    with start_identity(deployment, seed_file, dev_mode=True, demo_users=10) as running:
        demo = running.sign_in("U3", DEV_PASSWORD)
        assert demo.status_code == 201, demo.text
        assert demo.json()["user_id"] == 3
        assert running.sign_in("u3", "starling-dev-passwor").status_code == 401
        assert running.sign_in("u11", DEV_PASSWORD).status_code == 401
    with start_identity(deployment, seed_file) as running:
        assert running.sign_in("u3", DEV_PASSWORD).status_code == 401

    events = logins(kafka, deployment, expected=4)
    # Different keys land on different partitions: compare without order.
    assert sorted((e.username, e.outcome.value, e.user_id or 0) for e in events) == sorted(
        [
            ("U3", "succeeded", 3),
            ("u3", "bad_password", 3),
            ("u11", "unknown_account", 0),
            ("u3", "unknown_account", 0),
        ]
    )


def test_a_changed_cost_rehashes_at_the_next_sign_in(
    deployment: Deployment, seed_file: Path, redis_client: redis.Redis
) -> None:
    account = keys.identity_account("alice")
    with start_identity(deployment, seed_file, signup=True) as running:
        running.sign_up("alice")
    old_hash = redis_client.hget(account, "hash")
    assert old_hash is not None and b"t=1," in old_hash
    with start_identity(deployment, seed_file, argon2_time_cost=2) as running:
        assert running.sign_in("alice", PASSWORD).status_code == 201
        wait_for(lambda: redis_client.hget(account, "hash") != old_hash, 10, "the rehash")
        new_hash = redis_client.hget(account, "hash")
        assert new_hash is not None and b"t=2," in new_hash
        # The new hash still holds the same password.
        assert running.sign_in("alice", PASSWORD).status_code == 201
        assert running.sign_in("alice", "wrong password").status_code == 401


def test_bad_input_gets_a_clear_4xx(deployment: Deployment, seed_file: Path) -> None:
    with start_identity(deployment, seed_file) as running:
        http = running.http
        body = b'{"username": "alice", "password": "x"}'
        cases = {
            "no content type": http.post("/v1/sessions", content=body),
            "text/plain": http.post(
                "/v1/sessions", content=body, headers={"content-type": "text/plain"}
            ),
            "form": http.post("/v1/sessions", data={"username": "alice", "password": "x"}),
            "too large": http.post("/v1/sessions", content=b"{" + b" " * 5000, headers=JSON),
            "chunked too large": http.post(
                "/v1/sessions", content=iter([b"{", b" " * 4096, b"}"]), headers=JSON
            ),
            "not json": http.post("/v1/sessions", content=b"{", headers=JSON),
            "bad name": http.post(
                "/v1/sessions", json={"username": "a@b", "password": "x"}, headers=JSON
            ),
            "extra field": http.post(
                "/v1/sessions",
                json={"username": "alice", "password": "x", "admin": True},
                headers=JSON,
            ),
        }
        statuses = {name: response.status_code for name, response in cases.items()}
        assert statuses == {
            "no content type": 415,
            "text/plain": 415,
            "form": 415,
            "too large": 413,
            "chunked too large": 413,
            "not json": 400,
            "bad name": 400,
            "extra field": 400,
        }
        assert cases["text/plain"].json()["field"] == "header.content-type"
        assert cases["bad name"].json()["field"] == "$.username"
        for response in cases.values():
            assert_documented("/v1/sessions", "POST", response.status_code, response.json())
        # JSON with a charset parameter is still JSON.
        charset = {"content-type": "application/json; charset=utf-8"}
        assert http.post("/v1/sessions", content=body, headers=charset).status_code == 401

        huge_header = http.get(DISCOVERY_PATH, headers={"x-filler": "a" * 20_000})
        assert huge_header.status_code == 431
        assert huge_header.json()["reason"] == "header_too_large"
        assert_documented(DISCOVERY_PATH, "GET", 431, huge_header.json())
        # A head that never ends is refused the same way, and its connection closed.
        status, raw_body = raw_request(
            running.server.port, b"GET /openapi.json HTTP/1.1\r\nX-A: " + b"y" * 20_000
        )
        assert status == 431
        assert json.loads(raw_body) == huge_header.json()
        not_found = http.get("/v1/nothing")
        assert not_found.status_code == 404 and not_found.json()["error"] == "not_found"
        wrong_method = http.get("/v1/sessions")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"] == "method_not_allowed"
        # Still serving after all of that.
        assert http.get(DISCOVERY_PATH).status_code == 200
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert "starling_identity_signin_attempts_total{" in metrics
        assert 'status="5' not in metrics


def test_unacknowledged_login_is_503_and_grants_nothing(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis, seed_file: Path
) -> None:
    closed_port = free_ports(1)[0]
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.overrides["kafka_bootstrap_servers"] = f"127.0.0.1:{closed_port}"
    with start_identity(
        deployment, seed_file, dev_mode=True, demo_users=5, ack_timeout_s=2.0
    ) as running:
        started = time.monotonic()
        response = running.sign_in("u1", DEV_PASSWORD)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "not_acknowledged"
        assert_documented("/v1/sessions", "POST", 503, response.json())
        assert "set-cookie" not in response.headers and "access_token" not in response.text
        assert elapsed < 4.0
        assert not running.identity.health.ready()
        assert httpx.get(running.metrics_url + "/readyz").status_code == 503
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert "starling_identity_logins_not_acknowledged_total 1.0" in metrics


def test_starling_run_identity_process_never_logs_secrets(
    deployment: Deployment, seed_file: Path, redis_client: redis.Redis
) -> None:
    http_port, metrics_port = free_ports(2)
    env = deployment.env(
        "identity",
        HTTP_PORT=str(http_port),
        METRICS_PORT=str(metrics_port),
        LOG_LEVEL="DEBUG",
        STARLING_SHUTDOWN_TIMEOUT_S="5",
        STARLING_IDENTITY_ISSUER=ISSUER,
        STARLING_IDENTITY_SEED_FILE=str(seed_file),
        STARLING_IDENTITY_SIGNUP="true",
        STARLING_IDENTITY_DEV_MODE="true",
        STARLING_IDENTITY_DEMO_USERS="3",
        STARLING_IDENTITY_SIGNING_KEYS="k2,k1",
        # Every attempt counts, successful or not: one sign-in and two guesses fill it.
        STARLING_IDENTITY_SIGNIN_PER_ACCOUNT="3",
    )
    process = subprocess.Popen(
        service_command("identity"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    secrets_seen: list[str] = [PASSWORD, DEV_PASSWORD, SEED.decode(), "wrong-password-1"]
    output = ""
    try:
        metrics = f"http://127.0.0.1:{metrics_port}"

        def ready() -> bool:
            try:
                return httpx.get(metrics + "/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "/readyz of `starling run identity`")
        assert httpx.get(metrics + "/healthz").status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
            created = http.post("/v1/accounts", json={"username": "alice", "password": PASSWORD})
            assert created.status_code == 201, created.text
            signed_in = http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert signed_in.status_code == 201
            token = signed_in.json()["access_token"]
            secrets_seen.append(token)
            secrets_seen.extend(token.split("."))
            demo = http.post("/v1/sessions", json={"username": "u2", "password": DEV_PASSWORD})
            assert demo.status_code == 201
            secrets_seen.append(demo.json()["access_token"])
            wrong = {"username": "alice", "password": "wrong-password-1"}
            for _ in range(2):
                assert http.post("/v1/sessions", json=wrong).status_code == 401
            assert http.post("/v1/sessions", json=wrong).status_code == 429
            bad = {"authorization": f"Bearer {token}x"}
            assert http.delete("/v1/sessions/current", headers=bad).status_code == 401
            auth = {"authorization": f"Bearer {token}"}
            assert http.delete("/v1/sessions/current", headers=auth).status_code == 204
            assert len(http.get("/.well-known/jwks.json").json()["keys"]) == 2
        stored_hash = redis_client.hget(keys.identity_account("alice"), "hash")
        assert stored_hash is not None
        secrets_seen.append(stored_hash.decode())
        # The hash's salt and digest, each of which alone would be a leak.
        secrets_seen.extend(stored_hash.decode().split("$")[-2:])
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        output = process.stdout.read().decode() if process.stdout else ""
    print(output[-3000:])
    # The logs are not empty (DEBUG, every library's logger): the grep has something to search.
    assert "identity: serving issuer" in output and "DEBUG" in output
    leaked = [secret[:12] + "..." for secret in secrets_seen if secret in output]
    assert not leaked, f"secrets in the service's logs: {leaked}"
