"""Event contracts: golden vectors, round trips, and a typed error for every bad input."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from starling.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    EventError,
    EventErrorKind,
    LoginOutcome,
    Platform,
    TweetCreated,
    UserLogin,
    decode,
    decode_as,
    encode,
    new_event,
    type_tag,
)
from tests.unit.golden_events import GOLDEN_DIR, GOLDEN_EVENTS, golden_path

pytestmark = pytest.mark.unit

INVALID_VECTORS = Path(__file__).resolve().parent.parent / "golden" / "invalid-events.jsonl"


def _invalid_cases() -> list[Any]:
    cases = [json.loads(line) for line in INVALID_VECTORS.read_text().splitlines() if line]
    return [pytest.param(case, id=case["case"]) for case in cases]


def _golden(event_class: type[Any], version: int = 1) -> Any:
    return next(e for e in GOLDEN_EVENTS if type(e) is event_class and e.schema_version == version)


def _golden_id(event: Any) -> str:
    return f"{type_tag(type(event))}.v{event.schema_version}"


def test_every_event_type_has_a_golden_vector_for_every_version() -> None:
    covered = {(type(event), event.schema_version) for event in GOLDEN_EVENTS}
    expected = {(cls, v) for cls in EVENT_TYPES for v in cls.SUPPORTED_VERSIONS}
    assert covered == expected
    on_disk = {path.name for path in GOLDEN_DIR.glob("*.json")}
    assert on_disk == {golden_path(event).name for event in GOLDEN_EVENTS}


@pytest.mark.parametrize("event", GOLDEN_EVENTS, ids=_golden_id)
def test_encoding_matches_the_golden_bytes(event: Any) -> None:
    # Byte equality pins the wire format: a change here breaks every consumer in flight.
    assert encode(event) + b"\n" == golden_path(event).read_bytes()


@pytest.mark.parametrize("event", GOLDEN_EVENTS, ids=_golden_id)
def test_golden_bytes_decode_to_the_canonical_event(event: Any) -> None:
    payload = golden_path(event).read_bytes().strip()
    assert decode(payload) == event
    assert decode_as(payload, type(event)) == event


@pytest.mark.parametrize("event", GOLDEN_EVENTS, ids=_golden_id)
def test_partition_key_is_the_entity_whose_order_matters(event: Any) -> None:
    key_field = type(event).KEY_FIELD
    assert event.partition_key() == str(getattr(event, key_field)).encode()


def test_unknown_fields_are_ignored_for_additive_evolution() -> None:
    tweet = _golden(TweetCreated)
    payload = json.loads(golden_path(tweet).read_bytes())
    payload["added_in_a_later_release"] = {"nested": True}
    assert decode(json.dumps(payload).encode()) == tweet


@pytest.mark.parametrize("case", _invalid_cases())
def test_invalid_payload_gives_typed_error_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(EventError) as raised:
        decode(case["payload"].encode())
    assert raised.value.kind == EventErrorKind(case["kind"])
    assert raised.value.field == case["field"]
    assert raised.value.reason  # a human-readable cause, never empty
    if case["field"]:
        assert case["field"] in str(raised.value)


def test_decode_as_rejects_a_valid_event_of_another_type() -> None:
    payload = encode(_golden(UserLogin))
    with pytest.raises(EventError) as raised:
        decode_as(payload, TweetCreated)
    assert raised.value.kind is EventErrorKind.WRONG_TYPE
    assert "user.login" in str(raised.value) and "tweet.created" in str(raised.value)


def test_oversized_payload_is_refused_before_parsing() -> None:
    # Not even JSON: the size check must come first so huge garbage costs nothing.
    with pytest.raises(EventError) as raised:
        decode(b"[" * (MAX_EVENT_BYTES + 1))
    assert raised.value.kind is EventErrorKind.TOO_LARGE


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00", b"null", b"{}", b'{"type": null}'])
def test_garbage_never_escapes_as_anything_but_event_error(garbage: bytes) -> None:
    with pytest.raises(EventError):
        decode(garbage)


def test_new_event_fills_id_version_and_time() -> None:
    before = datetime.now(UTC)
    login = new_event(
        UserLogin,
        user_id=3,
        username="u3",
        outcome=LoginOutcome.SUCCEEDED,
        success=True,
        ip="192.0.2.1",
    )
    assert login.schema_version == UserLogin.SCHEMA_VERSION == 2
    assert isinstance(login.event_id, uuid.UUID)
    assert login.event_time >= before
    assert decode(encode(login)) == login


def test_constructing_an_invalid_event_in_code_fails_too() -> None:
    with pytest.raises(ValueError, match="reply_to_user_id"):
        new_event(
            TweetCreated,
            tweet_id=1,
            author_id=2,
            text="x",
            platform=Platform.WEB,
            reply_to_tweet_id=5,
        )


# ---- UserLogin: two versions in one class ---------------------------------------------------


def test_other_events_decode_only_their_one_version() -> None:
    for event_class in EVENT_TYPES:
        if event_class is not UserLogin:
            assert event_class.SUPPORTED_VERSIONS == (event_class.SCHEMA_VERSION,) == (1,)
    assert UserLogin.SUPPORTED_VERSIONS == (1, 2)


def test_v1_login_decodes_with_the_v2_fields_empty() -> None:
    login = decode_as(golden_path(_golden(UserLogin, 1)).read_bytes(), UserLogin)
    assert (login.schema_version, login.outcome, login.username, login.user_agent) == (
        1,
        None,
        None,
        "",
    )
    assert login.partition_key() == b"42"


def test_unknown_account_login_has_no_user_id_and_is_keyed_by_the_name() -> None:
    login = new_event(
        UserLogin,
        username="Mallory_X",
        outcome=LoginOutcome.UNKNOWN_ACCOUNT,
        success=False,
        ip="198.51.100.9",
        user_agent="curl/8.5",
    )
    wire = encode(login)
    # The id is left off the wire, not sent as null: consumers treat both alike.
    assert b"user_id" not in wire
    assert decode(wire) == login
    assert login.partition_key() == b"name:mallory_x"
    assert (login.country, login.device_id, login.platform) == (None, None, None)
    explicit_null = json.loads(wire)
    explicit_null["user_id"] = None
    assert decode(json.dumps(explicit_null).encode()) == login


@pytest.mark.parametrize("user_id", [None, 7])
def test_rate_limited_login_may_or_may_not_name_an_account(user_id: int | None) -> None:
    login = new_event(
        UserLogin,
        user_id=user_id,
        username="u7",
        outcome=LoginOutcome.RATE_LIMITED,
        success=False,
        ip="198.51.100.9",
    )
    assert decode(encode(login)) == login
    assert login.partition_key() == (b"7" if user_id else b"name:u7")


def test_v2_rule_breaks_in_code_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"\$\.success"):
        new_event(
            UserLogin,
            user_id=7,
            username="u7",
            outcome=LoginOutcome.RATE_LIMITED,
            success=True,
            ip="198.51.100.9",
        )
    with pytest.raises(ValueError, match=r"\$\.username"):
        new_event(
            UserLogin, user_id=7, outcome=LoginOutcome.SUCCEEDED, success=True, ip="192.0.2.1"
        )
