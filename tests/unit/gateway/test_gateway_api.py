"""The gateway's request validation, error mapping, authorization and fan-out, with no
Kafka or store: requests that fail validation never reach the producer or the store.
Identity is a real signed token (see tests/tokens.py)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from starling.events import MAX_EVENT_BYTES, Platform, TweetCreated, encode, new_event
from starling.gateway.app import parse_id, parse_limit
from starling.gateway.hub import (
    SHUTDOWN_FRAME,
    SLOW_CLIENT_FRAME,
    Hub,
    UserStreamsFullError,
    sse_frame,
)
from starling.gateway.settings import GatewaySettings
from tests.tokens import TokenIssuer
from tests.unit.gateway.conftest import Client

pytestmark = pytest.mark.unit


def tweet(author: int = 7, **fields: object) -> dict[str, object]:
    event = new_event(TweetCreated, tweet_id=99, author_id=author, text="hi", platform=Platform.WEB)
    body: dict[str, object] = json.loads(encode(event))
    body.update(fields)
    return body


def as_user(issuer: TokenIssuer, user: int = 7) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(user)}"}


def post(
    client: Client, issuer: TokenIssuer, body: object, user: int = 7, raw: bytes | None = None
) -> httpx.Response:
    headers = {**as_user(issuer, user), "Content-Type": "application/json"}
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post("/v1/events", content=content, headers=headers)


@pytest.mark.parametrize(
    ("body", "raw", "status", "error", "field"),
    [
        (None, b"{not json", 400, "malformed", None),
        (None, b"[1, 2]", 400, "malformed", None),
        ({"text": None}, None, 400, "invalid", "$.text"),
        ({"text": "x" * 281}, None, 400, "invalid", "$.text"),
        ({"tweet_id": 0}, None, 400, "invalid", "$.tweet_id"),
        ({"schema_version": 9}, None, 400, "unknown_version", "$.schema_version"),
        ({"type": "tweet.deleted"}, None, 422, "unknown_type", "$.type"),
        # A valid event, but one only the pipeline produces, never a client.
        ({"type": "trend"}, None, 422, "wrong_type", "$.type"),
        (
            None,
            b'{"type": "tweet.created", "pad": "' + b"x" * MAX_EVENT_BYTES + b'"}',
            413,
            "too_large",
            None,
        ),
    ],
)
def test_bad_events_are_refused_with_kind_and_field(
    client: Client,
    issuer: TokenIssuer,
    body: dict[str, object] | None,
    raw: bytes | None,
    status: int,
    error: str,
    field: str | None,
) -> None:
    response = post(client, issuer, tweet(**body) if body is not None else None, raw=raw)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert answer["reason"] == error
    assert answer["field"] == field
    assert answer["message"]


def test_missing_field_is_named(client: Client, issuer: TokenIssuer) -> None:
    body = tweet()
    del body["author_id"]
    answer = post(client, issuer, body).json()
    assert (answer["error"], answer["field"]) == ("invalid", "$.author_id")


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/users/abc/timeline", 400, "path.user_id"),
        ("/v1/users/0/notifications", 400, "path.user_id"),
        ("/v1/users/99999999999999999999/timeline", 400, "path.user_id"),
        ("/v1/users/7/timeline?limit=0", 400, "query.limit"),
        ("/v1/users/7/timeline?limit=201", 400, "query.limit"),
        ("/v1/users/7/timeline?before=-1", 400, "query.before"),
        ("/v1/users/7/stream/x", 404, None),
    ],
)
def test_bad_ids_and_limits(
    client: Client, issuer: TokenIssuer, path: str, status: int, field: str | None
) -> None:
    response = client.get(path, headers=as_user(issuer))
    assert response.status_code == status
    assert response.json()["field"] == field


def test_parsers() -> None:
    assert parse_id("1", "f") == 1
    assert parse_id(str(2**63 - 1), "f") == 2**63 - 1
    for bad in (None, "", "0", "-1", "1.0", "\u0661", str(2**63)):
        with pytest.raises(Exception, match="must"):
            parse_id(bad, "f")
    assert parse_limit(None, 50, 200) == 50
    assert parse_limit("200", 50, 200) == 200


def test_settings_take_the_charts_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "8081")
    monkeypatch.setenv("STARLING_GATEWAY_ISSUER", "https://id.example.com")
    monkeypatch.setenv("STARLING_GATEWAY_AUDIENCE", "starling")
    settings = GatewaySettings()
    assert settings.http_port == 8081
    assert settings.auth == "token"


def test_hub_routes_per_user_and_drops_slow_clients() -> None:
    async def scenario() -> None:
        dropped: list[int] = []
        hub = Hub(queue_size=2, max_streams=4, on_drop=lambda: dropped.append(1), max_per_user=2)
        alice, bob = hub.subscribe(1), hub.subscribe(2)
        assert hub.to_user(1, "timeline", b"{}") == 1
        assert hub.broadcast("trend", b"{}") == 2
        assert bob.queue.get_nowait() == sse_frame("trend", b"{}", f"{hub.replay.epoch}-2")
        # Alice's queue (size 2) is full: the next update closes her stream, never waits.
        assert hub.to_user(1, "timeline", b"{}") == 0
        assert dropped == [1]
        assert alice.queue.get_nowait() == SLOW_CLIENT_FRAME
        assert alice.queue.empty()
        extra = hub.subscribe(2)
        # A user at their own cap is refused even while the pod has room.
        with pytest.raises(UserStreamsFullError, match="already has 2 open streams"):
            hub.subscribe(2)
        hub.subscribe(3)
        with pytest.raises(Exception, match="already serves 4"):
            hub.subscribe(4)
        hub.unsubscribe(alice)
        hub.unsubscribe(extra)
        assert not hub.wants(1) and len(hub) == 2
        hub.close_all()
        assert bob.queue.get_nowait() == SHUTDOWN_FRAME

    asyncio.run(scenario())


def test_sse_frame_format() -> None:
    frame = sse_frame("trend", b'{"a":1}', str(uuid.UUID(int=1)))
    assert frame == (b'event: trend\nid: 00000000-0000-0000-0000-000000000001\ndata: {"a":1}\n\n')


def test_timeline_read_answers_503_when_the_store_is_down(
    client: Client, issuer: TokenIssuer
) -> None:
    # The fixture's store address has nothing listening: the page script cannot run.
    response = client.get("/v1/users/7/timeline?limit=5&before=99", headers=as_user(issuer))
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"


def test_timeline_scan_factor_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_GATEWAY_ISSUER", "https://id.example.com")
    monkeypatch.setenv("STARLING_GATEWAY_AUDIENCE", "starling")
    assert GatewaySettings().timeline_scan_factor == 3
    monkeypatch.setenv("STARLING_GATEWAY_TIMELINE_SCAN_FACTOR", "5")
    assert GatewaySettings().timeline_scan_factor == 5
    monkeypatch.setenv("STARLING_GATEWAY_TIMELINE_SCAN_FACTOR", "0")
    with pytest.raises(ValueError, match="timeline_scan_factor"):
        GatewaySettings()
