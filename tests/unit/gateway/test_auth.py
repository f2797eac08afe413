"""Identity and authorization at the gateway, with real signed tokens and a real JWKS
endpoint on 127.0.0.1 (tests/tokens.py). No Kafka, no store: a request that gets past
identity on a read route is answered 503 `store_unavailable` here (the fixture's store
address has nothing listening), which is how these tests see "accepted"; the integration
tests read real data with the same tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from starling.events import Platform, TweetCreated, UserInteraction, UserLogin, encode, new_event
from starling.events.schemas import json_schema_components
from starling.gateway.app import openapi_document
from starling.gateway.settings import GatewaySettings
from starling.harness._process import free_ports
from starling.runtime.config import ConfigError, load_settings
from tests.tokens import TokenIssuer, unsigned_token
from tests.unit.gateway.conftest import Client

pytestmark = pytest.mark.unit

TIMELINE = "/v1/users/7/timeline"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tampered(token: str, **claims: Any) -> str:
    """The token with its claims changed and its signature kept."""
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{encoded}.{signature}"


def passed_identity(response: httpx.Response) -> bool:
    """Identity accepted: the route went on to the (absent) store."""
    return response.status_code == 503 and response.json()["error"] == "store_unavailable"


def refused(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    answer = response.json()
    assert (answer["error"], answer["reason"]) == ("unauthenticated", reason), answer
    assert answer["message"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if reason != "missing":
        assert f'error_description="{reason}"' in challenge and 'error="invalid_token"' in challenge


def test_valid_tokens_of_every_published_key_type_are_accepted(
    client: Client, issuer: TokenIssuer
) -> None:
    for kid in issuer.published:
        response = client.get(TIMELINE, headers=bearer(issuer.mint(7, kid=kid)))
        assert passed_identity(response), (kid, response.text)
    # Clock skew inside the leeway (30 s) is tolerated.
    assert passed_identity(client.get(TIMELINE, headers=bearer(issuer.mint(7, lifetime_s=-10))))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.mint(7, lifetime_s=-120), "expired"),
        (lambda i: i.mint(7, not_before_s=300), "not_yet_valid"),
        (lambda i: i.mint(7, iat=int(time.time()) + 600), "not_yet_valid"),
        (lambda i: i.mint(7, iss="https://impostor.example.com"), "wrong_issuer"),
        (lambda i: i.mint(7, aud="some-other-api"), "wrong_audience"),
        (lambda i: i.forge_bad_signature(7), "bad_signature"),
        (lambda i: i.forge_none(7), "unsupported_algorithm"),
        (lambda i: i.forge_hs256_with_public_key(7), "unsupported_algorithm"),
        (lambda i: i.mint(7, exp=None), "missing_claim"),
        (lambda i: i.mint(7, aud=None), "missing_claim"),
        (lambda i: i.mint(7, iat=None), "missing_claim"),
        (lambda i: i.mint(7, without=("sub",)), "missing_claim"),
        (lambda i: i.mint("alice"), "bad_subject"),
        (lambda i: i.mint(0), "bad_subject"),
        (lambda i: i.mint(2**63), "bad_subject"),
        (lambda i: i.mint(7, header={"kid": "nobody-published-this"}), "unknown_key"),
        (lambda _i: "not-a-token", "malformed"),
        (lambda _i: "a.b.c", "malformed"),
        (lambda _i: "x" * 9000, "malformed"),
        # Cut at the signature: a JWT without its third segment is not one. (A token cut
        # inside the signature can still decode, to a signature that fails: that case is
        # `bad_signature`, above.)
        (lambda i: i.mint(7).rsplit(".", 1)[0], "malformed"),
        (lambda i: tampered(i.mint(8), sub="7"), "bad_signature"),
        (lambda i: unsigned_token({"alg": "EdDSA"}, i.claims(7), b"\x00" * 64), "unknown_key"),
    ],
)
def test_bad_tokens_are_refused_with_their_reason(
    client: Client, issuer: TokenIssuer, make: Callable[[TokenIssuer], str], reason: str
) -> None:
    refused(client.get(TIMELINE, headers=bearer(make(issuer))), reason)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": "Basic dTc6cGFzc3dvcmQ="}, "malformed"),
        ({"Authorization": "Bearer"}, "malformed"),
        ({"Authorization": "Bearer    "}, "malformed"),
    ],
)
def test_missing_and_malformed_credentials(
    client: Client, headers: dict[str, str], reason: str
) -> None:
    refused(client.get(TIMELINE, headers=headers), reason)
    refused(client.get("/v1/users/7/stream", headers=headers), reason)
    refused(
        client.post(
            "/v1/events", content=b"{}", headers={**headers, "Content-Type": "application/json"}
        ),
        reason,
    )


def test_cookie_when_no_header_and_the_header_first(client: Client, issuer: TokenIssuer) -> None:
    good, expired = issuer.mint(7), issuer.mint(7, lifetime_s=-120)
    assert passed_identity(client.get(TIMELINE, headers={"Cookie": f"starling_session={good}"}))
    refused(client.get(TIMELINE, headers={"Cookie": f"starling_session={expired}"}), "expired")
    # The Authorization header is read first: the cookie cannot rescue a bad header.
    response = client.get(
        TIMELINE, headers={**bearer(expired), "Cookie": f"starling_session={good}"}
    )
    refused(response, "expired")
    assert passed_identity(
        client.get(TIMELINE, headers={**bearer(good), "Cookie": f"starling_session={expired}"})
    )


def test_public_routes_need_no_token(client: Client) -> None:
    assert client.get("/openapi.json").status_code == 200
    # Trends: public, so past identity straight to the (absent) store.
    assert client.get("/v1/trends").json()["error"] == "store_unavailable"


def test_verified_tokens_are_cached_until_they_expire(client: Client, issuer: TokenIssuer) -> None:
    sample = client.gateway.metrics.registry.get_sample_value
    token = issuer.mint(7, lifetime_s=-28)  # 2 s left within the 30 s leeway
    for _ in range(3):
        assert passed_identity(client.get(TIMELINE, headers=bearer(token)))
    assert sample("starling_gateway_token_cache_total", {"result": "miss"}) == 1.0
    assert sample("starling_gateway_token_cache_total", {"result": "hit"}) == 2.0
    time.sleep(2.5)
    # The cached entry lapsed with the token: verified again, and refused.
    refused(client.get(TIMELINE, headers=bearer(token)), "expired")
    assert sample("starling_gateway_auth_failures_total", {"reason": "expired"}) == 1.0


def test_token_cache_is_bounded(issuer: TokenIssuer, make_client: Callable[..., Client]) -> None:
    client = make_client(**issuer.gateway_settings(token_cache_size=3))
    for user in (7, 7, 7, 7):
        assert passed_identity(client.get(TIMELINE, headers=bearer(issuer.mint(user))))
    assert client.gateway.verifier is not None and len(client.gateway.verifier) == 3


def test_jwks_ignores_shared_secret_keys(
    issuer: TokenIssuer, make_client: Callable[..., Client]
) -> None:
    # A JWKS that (wrongly) also publishes a symmetric key: it must never verify anything.
    issuer.extra_jwks = [{"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"}]
    try:
        client = make_client(**issuer.gateway_settings())
        assert passed_identity(client.get(TIMELINE, headers=bearer(issuer.mint(7))))
        assert client.gateway.verifier is not None
        assert "shared" not in client.gateway.verifier.keys.key_ids
        forged = unsigned_token({"alg": "HS256", "kid": "shared"}, issuer.claims(7), b"x" * 32)
        refused(client.get(TIMELINE, headers=bearer(forged)), "unsupported_algorithm")
    finally:
        issuer.extra_jwks = []


def test_a_token_cannot_pick_another_algorithm_for_a_key(
    client: Client, issuer: TokenIssuer
) -> None:
    import jwt

    rsa_key = next(k for k in issuer.keys.values() if k.algorithm == "RS256")
    # PS256 is accepted in general, but this key is published as RS256 only.
    token = jwt.encode(issuer.claims(7), rsa_key.private, "PS256", headers={"kid": rsa_key.kid})
    refused(client.get(TIMELINE, headers=bearer(token)), "unsupported_algorithm")


def test_keys_come_from_discovery_or_the_configured_url(
    issuer: TokenIssuer, make_client: Callable[..., Client]
) -> None:
    before = issuer.discovery_requests
    by_url = make_client(**issuer.gateway_settings(jwks_url=issuer.url + "/.well-known/jwks.json"))
    assert passed_identity(by_url.get(TIMELINE, headers=bearer(issuer.mint(7))))
    assert issuer.discovery_requests == before
    discovered = make_client(**issuer.gateway_settings())
    assert passed_identity(discovered.get(TIMELINE, headers=bearer(issuer.mint(7))))
    assert issuer.discovery_requests == before + 1


def test_an_unreachable_issuer_is_503_not_401(make_client: Callable[..., Client]) -> None:
    closed = free_ports(1)[0]
    client = make_client(
        auth="token", issuer=f"http://127.0.0.1:{closed}", audience="starling", jwks_timeout_s=1
    )
    # A well-formed EdDSA token: with the issuer unreachable its key can never be found.
    token = unsigned_token({"alg": "EdDSA", "kid": "k1"}, {"sub": "7"}, b"\x00" * 64)
    response = client.get(TIMELINE, headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["reason"] == "issuer_unavailable"
    assert client.gateway.metrics.registry.get_sample_value(
        "starling_gateway_jwks_fetches_total", {"outcome": "failed"}
    )


def test_unknown_kids_cannot_make_the_gateway_hammer_the_issuer(
    issuer: TokenIssuer, make_client: Callable[..., Client]
) -> None:
    client = make_client(**issuer.gateway_settings(jwks_min_refetch_s=1.0))
    assert passed_identity(client.get(TIMELINE, headers=bearer(issuer.mint(7))))
    fetched = issuer.jwks_requests
    forged = [issuer.mint(7, header={"kid": f"forged-{n}"}) for n in range(40)]
    started = time.monotonic()
    # Two bursts of 20 at once, then 5 one after the other.
    answers = client.concurrently([("GET", TIMELINE, {"headers": bearer(t)}) for t in forged[:20]])
    answers += client.concurrently(
        [("GET", TIMELINE, {"headers": bearer(t)}) for t in forged[20:35]]
    )
    answers += [client.get(TIMELINE, headers=bearer(token)) for token in forged[35:]]
    elapsed = time.monotonic() - started
    for answer in answers:
        refused(answer, "unknown_key")
    refetches = issuer.jwks_requests - fetched
    # At most one refetch per second of hammering (plus the one at the start).
    assert 1 <= refetches <= elapsed / 1.0 + 1, (refetches, elapsed)


def test_rotation_keeps_signed_in_users_signed_in(
    issuer: TokenIssuer, make_client: Callable[..., Client]
) -> None:
    client = make_client(**issuer.gateway_settings(jwks_min_refetch_s=0.2))
    old_kid = issuer.published[0]
    old_token = issuer.mint(7)
    assert passed_identity(client.get(TIMELINE, headers=bearer(old_token)))
    # The issuer rotates: a new key is published first and signs from now on.
    issuer.add_key("rotated", "EdDSA", publish=False)
    issuer.publish("rotated", first=True)
    try:
        new_token = issuer.mint(8)
        assert issuer.published[0] == "rotated"
        assert passed_identity(client.get("/v1/users/8/timeline", headers=bearer(new_token)))
        # The old key is still published: its tokens stay valid, cached or not.
        assert passed_identity(client.get(TIMELINE, headers=bearer(old_token)))
        assert passed_identity(client.get(TIMELINE, headers=bearer(issuer.mint(7, kid=old_kid))))
        # Dropped from the JWKS (after the token lifetime): even a cached token of that key
        # is refused once the gateway has re-read the key set.
        issuer.unpublish(old_kid)
        # (What the served gateway's periodic refresh does every STARLING_GATEWAY_JWKS_REFRESH_S.)
        assert client.gateway.verifier is not None
        asyncio.run(client.gateway.verifier.keys.refresh())
        refused(
            client.get(TIMELINE, headers=bearer(issuer.mint(7, kid=old_kid, lifetime_s=300))),
            "unknown_key",
        )
        refused(client.get(TIMELINE, headers=bearer(old_token)), "unknown_key")
    finally:
        issuer.publish(old_kid, first=True)
        issuer.unpublish("rotated")


# ---------------------------------------------------------------- authorization


def test_a_user_reads_and_streams_only_their_own_data(client: Client, issuer: TokenIssuer) -> None:
    alice = bearer(issuer.mint(7))
    for route in ("timeline", "notifications", "stream"):
        response = client.get(f"/v1/users/8/{route}", headers=alice)
        assert response.status_code == 403, (route, response.text)
        answer = response.json()
        assert (answer["error"], answer["reason"], answer["field"]) == (
            "forbidden",
            "not_your_resource",
            "path.user_id",
        )


def tweet(author: int) -> bytes:
    return encode(
        new_event(TweetCreated, tweet_id=99, author_id=author, text="hi", platform=Platform.WEB)
    )


def post_json(client: Client, token: str, content: bytes, **headers: str) -> httpx.Response:
    return client.post(
        "/v1/events",
        content=content,
        headers={"Content-Type": "application/json", **bearer(token), **headers},
    )


def test_events_only_as_oneself(client: Client, issuer: TokenIssuer) -> None:
    token = issuer.mint(7)
    other = post_json(client, token, tweet(author=8))
    assert other.status_code == 403
    assert (other.json()["reason"], other.json()["field"]) == ("not_your_resource", "$.author_id")
    like = new_event(UserInteraction, actor_id=8, action="like", target_user_id=9, tweet_id=5)
    answer = post_json(client, token, encode(like)).json()
    assert (answer["reason"], answer["field"]) == ("not_your_resource", "$.actor_id")
    sample = client.gateway.metrics.registry.get_sample_value
    assert sample("starling_gateway_events_rejected_total", {"reason": "not_your_resource"}) == 2


def test_clients_cannot_post_logins(client: Client, issuer: TokenIssuer) -> None:
    login = {
        "type": "user.login",
        "event_id": "00000000-0000-4000-8000-000000000001",
        "schema_version": 1,
        "event_time": "2026-11-27T10:00:00Z",
        "user_id": 7,
        "success": True,
        "ip": "10.0.0.1",
        "country": "NL",
        "device_id": "d1",
        "platform": "web",
    }
    response = post_json(client, issuer.mint(7), json.dumps(login).encode())
    assert response.status_code == 422
    answer = response.json()
    assert (answer["error"], answer["reason"], answer["field"]) == (
        "wrong_type",
        "wrong_type",
        "$.type",
    )
    assert "identity service" in answer["message"]
    assert UserLogin.__name__  # the schema still exists; only clients may not send it


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_events_must_be_json(client: Client, issuer: TokenIssuer, content_type: str | None) -> None:
    headers = bearer(issuer.mint(7))
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post("/v1/events", content=tweet(7), headers=headers)
    assert response.status_code == 415
    answer = response.json()
    assert (answer["error"], answer["reason"]) == ("unsupported_media_type",) * 2
    assert answer["field"] == "header.content-type"


def test_json_with_parameters_is_json(client: Client, issuer: TokenIssuer) -> None:
    response = post_json(
        client, issuer.mint(7), tweet(8), **{"Content-Type": "Application/JSON; charset=utf-8"}
    )
    # Past the content type check, to the actor check.
    assert response.json()["reason"] == "not_your_resource"


# ---------------------------------------------------------------- header mode


def test_header_mode_believes_only_trusted_proxies(make_client: Callable[..., Client]) -> None:
    settings: dict[str, Any] = {"auth": "header", "trusted_proxies": "10.1.0.0/16, fd00::/8"}
    ingress = make_client(peer="10.1.2.3", **settings)
    assert passed_identity(ingress.get(TIMELINE, headers={"X-Starling-User": "7"}))
    mine = ingress.get("/v1/users/8/timeline", headers={"X-Starling-User": "7"})
    assert mine.json()["reason"] == "not_your_resource"
    refused(ingress.get(TIMELINE), "missing")
    refused(ingress.get(TIMELINE, headers={"X-Starling-User": "abc"}), "bad_subject")
    # A bearer token does not count in header mode, and from elsewhere nothing does.
    v6 = make_client(peer="fd00::5", **settings)
    assert passed_identity(v6.get(TIMELINE, headers={"X-Starling-User": "7"}))
    for peer in ("10.2.0.1", "127.0.0.1", "::1"):
        outsider = make_client(peer=peer, **settings)
        refused(outsider.get(TIMELINE, headers={"X-Starling-User": "7"}), "untrusted_peer")


def test_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER", "AUDIENCE", "AUTH", "TRUSTED_PROXIES", "REVOCATION"):
        monkeypatch.delenv(f"STARLING_GATEWAY_{name}", raising=False)
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_ISSUER is required"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("STARLING_GATEWAY_ISSUER", "id.example.com")
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_ISSUER must be an http"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("STARLING_GATEWAY_ISSUER", "https://id.example.com/realms/starling")
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_AUDIENCE is required"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("STARLING_GATEWAY_AUDIENCE", "starling")
    assert load_settings(GatewaySettings).auth == "token"
    monkeypatch.setenv("STARLING_GATEWAY_AUTH", "header")
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_TRUSTED_PROXIES is required"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("STARLING_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr")
    with pytest.raises(ConfigError, match=r"STARLING_GATEWAY_TRUSTED_PROXIES: .*CIDR"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("STARLING_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7")
    settings = load_settings(GatewaySettings)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.168.1.7/32"]
    monkeypatch.setenv("STARLING_GATEWAY_AUTH", "basic")
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_AUTH"):
        load_settings(GatewaySettings)


# ---------------------------------------------------------------- the OpenAPI document


def test_openapi_document_describes_exactly_the_routes(client: Client) -> None:
    document = json.loads(openapi_document())
    assert document["openapi"].startswith("3.1")
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (route.path, method)
        for route in client.gateway.app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == served
    assert client.get("/openapi.json").json() == document


def test_openapi_document_covers_security_and_errors() -> None:
    document = json.loads(openapi_document())
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"]["bearerFormat"] == "JWT"
    assert schemes["sessionCookie"] == {**schemes["sessionCookie"], "in": "cookie"}
    assert schemes["sessionCookie"]["name"] == "starling_session"
    error_fields = set(document["components"]["schemas"]["Error"]["required"])
    assert error_fields == {"error", "reason", "field", "message"}
    public = {("/v1/trends", "get"), ("/openapi.json", "get")} | {
        (path, "get") for path in ("/", "/static/live.js", "/static/live.css", "/config.json")
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            if (path, method) in public:
                assert operation["security"] == []
            else:
                assert {"401", "403"} <= statuses, (path, method)
            for status, answer in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                if "$ref" in answer:
                    name = answer["$ref"].rsplit("/", 1)[1]
                    answer = document["components"]["responses"][name]  # noqa: PLW2901
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


def test_openapi_event_schemas_match_the_code() -> None:
    """The request body schemas are what msgspec derives from the event classes now: a
    schema change without a document update fails here."""
    document = json.loads(openapi_document())
    derived = json_schema_components((TweetCreated, UserInteraction))
    documented = document["components"]["schemas"]
    for name, schema in derived.items():
        if "description" in schema:
            schema["description"] = " ".join(schema["description"].split())
        assert documented[name] == schema, name


def test_oversized_heads_are_431_before_any_route(client: Client, issuer: TokenIssuer) -> None:
    headers = {**bearer(issuer.mint(7)), "X-Padding": "x" * 17_000}
    for response in (
        client.get(TIMELINE, headers=headers),
        client.get("/v1/trends", headers=headers),
        client.get("/v1/trends?" + "q=1&" * 5000),
    ):
        assert response.status_code == 431
        assert response.json()["reason"] == "header_too_large"
    # Within the limit (16 KiB by default): served.
    padded = {**bearer(issuer.mint(7)), "X-Padding": "x" * 12_000}
    assert passed_identity(client.get(TIMELINE, headers=padded))
