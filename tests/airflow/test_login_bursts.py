"""login_events under `dag.test()` against the real broker and store: failed sign-ins in
bursts, per account and per client address, from v1 and v2 logins mixed."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from starling.events import (
    LoginOutcome,
    Notification,
    NotificationKind,
    Platform,
    Recommendation,
    UserLogin,
    decode_as,
    encode,
    new_event,
)
from starling.topics import NOTIFICATIONS, RECOMMENDATIONS
from starling_operators.triggers import login_trigger_payload
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import read_topic

pytestmark = pytest.mark.integration

STUFFER = "203.0.113.50"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=8)


def attempt(
    seconds: int,
    outcome: LoginOutcome,
    user_id: int | None,
    ip: str = STUFFER,
    username: str | None = None,
) -> UserLogin:
    return new_event(
        UserLogin,
        event_time=START + timedelta(seconds=seconds),
        user_id=user_id,
        username=username or f"u{user_id}",
        outcome=outcome,
        success=outcome is LoginOutcome.SUCCEEDED,
        ip=ip,
        user_agent="python-requests/2.32.3",
    )


def v1_login(seconds: int, user_id: int, country: str, success: bool = True) -> UserLogin:
    return UserLogin(
        event_id=uuid.uuid4(),
        schema_version=1,
        event_time=START + timedelta(seconds=seconds),
        user_id=user_id,
        success=success,
        ip="192.0.2.10",
        country=country,
        device_id="phone-1",
        platform=Platform.IOS,
    )


def test_address_and_account_bursts_flag_the_accounts_tried_once(
    starling_env: dict[str, str],
) -> None:
    bad, limited, unknown = (
        LoginOutcome.BAD_PASSWORD,
        LoginOutcome.RATE_LIMITED,
        LoginOutcome.UNKNOWN_ACCOUNT,
    )
    # A credential-stuffing run from one address: 12 existing accounts and 8 names that
    # match none, one attempt each; the 20th failure from the address is the burst.
    stuffing = [attempt(i, bad, 101 + i) for i in range(12)]
    stuffing += [attempt(12 + i, unknown, None, username=f"ghost{i}") for i in range(8)]
    # After the crossing: a new account is told, an account already tried is not again,
    # and a name without an account tells nobody.
    after = [
        attempt(30, bad, 113),
        attempt(31, limited, 101),
        attempt(32, limited, None, username="ghost9"),
    ]
    # One account, five failures from two addresses (the last two refused by the limiter):
    # an account burst at the fifth.
    account = [attempt(40 + i, bad, 200, ip="198.51.100.1") for i in range(3)]
    account += [attempt(43 + i, limited, 200, ip="198.51.100.2") for i in range(2)]
    # v1 logins in the same run: a new country for user 7, and a success of user 8 (v2,
    # country unknown) that gets recommendations but no alert.
    mixed = [
        v1_login(50, 7, "US"),
        v1_login(51, 7, "BR"),
        attempt(52, LoginOutcome.SUCCEEDED, 8, ip="192.0.2.20"),
    ]
    logins = stuffing + after + account + mixed
    payloads = [login_trigger_payload(encode(e)) for e in logins]

    dag = load_dag("login_events.py")
    run = dag.test(run_conf={"payloads": payloads})
    assert run.state == "success"

    bootstrap, prefix = starling_env["bootstrap"], starling_env["prefix"]
    notes = [
        decode_as(r.value or b"", Notification)
        for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
    ]
    assert {n.kind for n in notes} == {NotificationKind.ACCOUNT_ACTIVITY}
    by_recipient = {n.recipient_id: n for n in notes}
    assert Counter(n.recipient_id for n in notes) == Counter(
        {**{user: 1 for user in range(101, 114)}, 200: 1, 7: 1}
    ), "each account tried by the address told once; the account burst; the new country"
    crossing = stuffing[-1].event_id  # an unknown name's attempt completes the burst
    for user in range(101, 113):
        assert by_recipient[user].source_event_id == crossing
        assert STUFFER in by_recipient[user].message
    assert by_recipient[113].source_event_id == after[0].event_id
    assert STUFFER in by_recipient[113].message
    assert by_recipient[200].source_event_id == account[-1].event_id
    assert "198.51.100.2" in by_recipient[200].message
    assert by_recipient[7].source_event_id == mixed[1].event_id
    assert "BR" in by_recipient[7].message

    recs = [
        decode_as(r.value or b"", Recommendation)
        for r in read_topic(bootstrap, prefix + RECOMMENDATIONS)
    ]
    # Only accounts that signed in get recommendations (never an unknown name's attempt).
    assert {r.user_id for r in recs} <= {7, 8}

    # The same logins again (a replay): the same verdicts, so the same notification ids.
    again = dag.test(run_conf={"payloads": payloads})
    assert again.state == "success"
    replayed = [
        decode_as(r.value or b"", Notification)
        for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
    ]
    assert len(replayed) == 2 * len(notes)
    assert Counter(n.event_id for n in replayed) == Counter({n.event_id: 2 for n in notes})
