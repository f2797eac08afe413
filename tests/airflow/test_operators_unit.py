"""Pure parts of starling_operators: analytics, records, client settings, callables."""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from starling.events import (
    InteractionAction,
    LoginOutcome,
    Platform,
    TweetEnriched,
    UserInteraction,
    UserLogin,
    encode,
    new_event,
)
from starling_operators import analytics, kafka, settings
from starling_operators.functions import encoded_events
from starling_operators.kafka import KafkaRecord
from starling_operators.publish import InvalidEventError, validate_payloads
from starling_operators.records import (
    dead_letter_message,
    decode_records,
    derived_event_id,
)
from starling_operators.triggers import login_trigger_payload

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def interaction(actor: int, action: InteractionAction, target: int, tweet: int | None = None):
    return new_event(
        UserInteraction,
        event_time=NOW,
        actor_id=actor,
        action=action,
        target_user_id=target,
        tweet_id=tweet,
    )


def tweet(tweet_id: int, author: int, age: timedelta, tags: list[str] | None = None):
    return new_event(
        TweetEnriched,
        event_time=NOW - age,
        tweet_id=tweet_id,
        author_id=author,
        text="hello world",
        hashtags=tags or [],
        mentions=[],
        lang="en",
        sentiment=0.0,
        source_event_id=uuid.uuid4(),
    )


def test_who_to_follow_weights_selective_followees_higher() -> None:
    # 1 follows 2 (follows only 4) and 3 (follows 4, 5, 6, 7); 1 already follows 3; 6 muted.
    following = {1: {2, 3}, 2: {4}, 3: {4, 5, 6, 7, 1}}
    ranked = analytics.who_to_follow(1, following, excluded={6})
    scores = dict(ranked)
    assert set(scores) == {4, 5, 7}
    assert scores[4] == pytest.approx(1 / math.log(3) + 1 / math.log(7))
    assert scores[5] == pytest.approx(1 / math.log(7))
    assert ranked[0][0] == 4
    assert [c for c, _ in ranked[1:]] == [5, 7]  # ties by id


def test_tweet_scores_decay_and_weight_replies_over_likes() -> None:
    tweets = [
        tweet(10, 2, timedelta(hours=6)),
        tweet(11, 3, timedelta(0)),
        tweet(12, 4, timedelta(0)),
    ]
    events = [
        interaction(5, InteractionAction.REPLY, 2, 10),
        interaction(5, InteractionAction.LIKE, 3, 11),
        interaction(6, InteractionAction.LIKE, 4, 12),
        interaction(6, InteractionAction.UNLIKE, 4, 12),
    ]
    candidates = analytics.rank_tweet_candidates(tweets, events, NOW)
    assert candidates[10].score == pytest.approx(27 / 2)  # one half-life old
    assert candidates[11].score == pytest.approx(1)
    assert 12 not in candidates  # liked then unliked
    picks = analytics.recommend_tweets(1, candidates, {1: {5}})
    # Followee 5 engaged with both: social proof doubles each score.
    assert picks == [(10, pytest.approx(27.0)), (11, pytest.approx(2.0))]
    assert analytics.recommend_tweets(5, candidates, {}) == []  # already engaged


def test_activity_report_counts_and_engagement() -> None:
    report = analytics.activity_report(
        [
            interaction(1, InteractionAction.LIKE, 2, 10),
            interaction(1, InteractionAction.FOLLOW, 3),
            interaction(4, InteractionAction.REPLY, 2, 10),
        ]
    )
    assert report.events == 3
    assert report.active_users == 2
    assert report.users[2].engagement_received == 28.0
    assert report.users[1].as_fields()["did.like"] == "1"
    assert report.top_tweets() == [(10, 28.0)]


def login(success: bool, country: str = "US") -> UserLogin:
    """A v1 login, as clients posted them before the identity service."""
    return UserLogin(
        event_id=uuid.uuid4(),
        schema_version=1,
        event_time=NOW,
        user_id=7,
        success=success,
        ip="1.2.3.4",
        country=country,
        device_id="d",
        platform=Platform.WEB,
        failure_reason=None if success else "bad",
    )


def sign_in(
    outcome: LoginOutcome,
    user_id: int | None = 7,
    ip: str = "198.51.100.9",
    country: str | None = None,
) -> UserLogin:
    """A v2 login, as the identity service emits them (country unknown unless given)."""
    return new_event(
        UserLogin,
        event_time=NOW,
        user_id=user_id,
        username=f"u{user_id}" if user_id is not None else "nobody",
        outcome=outcome,
        success=outcome is LoginOutcome.SUCCEEDED,
        ip=ip,
        user_agent="curl/8.5",
        country=country,
    )


def test_login_verdicts() -> None:
    assert analytics.assess_login(login(True, "BR"), {"US"}, 0).reasons == ("new_country",)
    assert not analytics.assess_login(login(True, "BR"), set(), 0)  # no history yet
    assert analytics.assess_login(login(False), {"US"}, 5).reasons == ("failure_burst",)
    assert not analytics.assess_login(login(False), {"US"}, 6)  # one alarm per burst
    message = analytics.describe_login_alert(login(True, "BR"), ["new_country"])
    assert "BR" in message and "web" in message


RULES = analytics.LoginRules(per_account=3, per_address=4)
BAD = LoginOutcome.BAD_PASSWORD


def test_v2_failures_burst_per_account_whatever_their_outcome() -> None:
    for outcome in (BAD, LoginOutcome.RATE_LIMITED):
        verdict = analytics.assess_login(sign_in(outcome), set(), 3, rules=RULES)
        assert verdict.reasons == ("failure_burst",), outcome
        assert not analytics.assess_login(sign_in(outcome), set(), 2, rules=RULES)
    # A success is never a failure burst, however many failures came before it.
    assert not analytics.assess_login(sign_in(LoginOutcome.SUCCEEDED), set(), 3, rules=RULES)


def test_v2_login_without_a_country_skips_the_new_country_rule() -> None:
    assert not analytics.assess_login(sign_in(LoginOutcome.SUCCEEDED), {"US"}, 0)
    flagged = analytics.assess_login(sign_in(LoginOutcome.SUCCEEDED, country="BR"), {"US"}, 0)
    assert flagged.reasons == ("new_country",)
    message = analytics.describe_login_alert(sign_in(BAD), ["failure_burst"])
    assert "198.51.100.9" in message and "None" not in message


def test_address_burst_flags_every_existing_account_tried_at_the_crossing() -> None:
    # Three earlier failures from the address (two accounts and a name that matched none);
    # this fourth reaches the threshold.
    earlier = [11, None, 12]
    verdict = analytics.assess_login(sign_in(BAD, user_id=13), set(), 1, earlier, RULES)
    assert verdict.address_targets == (11, 12, 13)
    assert verdict.reasons == ("address_burst",)
    message = analytics.describe_address_alert(sign_in(BAD, user_id=13))
    assert "198.51.100.9" in message
    # Below the threshold nothing is flagged.
    assert not analytics.assess_login(sign_in(BAD, user_id=13), set(), 1, earlier[:2], RULES)


def test_address_burst_after_the_crossing_flags_only_accounts_newly_tried() -> None:
    earlier = [11, None, 12, 13]
    assert not analytics.assess_login(sign_in(BAD, user_id=12), set(), 2, earlier, RULES)
    later = analytics.assess_login(sign_in(BAD, user_id=14), set(), 1, earlier, RULES)
    assert later.address_targets == (14,) and later.reasons == ("address_burst",)


def test_unknown_account_failures_count_toward_the_address_and_alert_nobody_themselves() -> None:
    unknown = sign_in(LoginOutcome.UNKNOWN_ACCOUNT, user_id=None)
    # The fourth failure from the address is the unknown name: the accounts tried are told.
    verdict = analytics.assess_login(unknown, set(), 3, [11, 12, None], RULES)
    assert verdict.reasons == () and verdict.address_targets == (11, 12)
    # Only unknown names from an address: a burst, but no account to tell.
    assert not analytics.assess_login(unknown, set(), 3, [None, None, None], RULES)


def test_login_rules_from_the_environment() -> None:
    assert analytics.LoginRules.from_env({}) == analytics.LoginRules(5, 20, timedelta(minutes=10))
    env = {
        analytics.ACCOUNT_THRESHOLD_ENV: "8",
        analytics.ADDRESS_THRESHOLD_ENV: "50",
        analytics.WINDOW_ENV: "900",
    }
    assert analytics.LoginRules.from_env(env) == analytics.LoginRules(8, 50, timedelta(minutes=15))
    with pytest.raises(ValueError, match=analytics.ADDRESS_THRESHOLD_ENV):
        analytics.LoginRules.from_env({analytics.ADDRESS_THRESHOLD_ENV: "lots"})
    with pytest.raises(ValueError, match="per_account must be at least 2"):
        analytics.LoginRules.from_env({analytics.ACCOUNT_THRESHOLD_ENV: "1"})


def test_clean_hashtags_case_folds_and_dedupes() -> None:
    assert analytics.clean_hashtags(["Rust", "#rust", "Go"]) == ["rust", "go"]


def test_bounded_client_settings_and_connection_wins() -> None:
    config = kafka.producer_config(
        {"bootstrap.servers": "b:9092", "group.id": "g", "message.timeout.ms": 5000}
    )
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["message.timeout.ms"] == 5000
    assert "group.id" not in config
    consumer = kafka.consumer_config(
        {"bootstrap.servers": "b", "acks": "all"}, "starling-airflow-x"
    )
    assert consumer["enable.auto.commit"] is False and "acks" not in consumer
    assert consumer["socket.connection.setup.timeout.ms"] == 5000


def test_group_ids_stay_inside_the_acl_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.group_id("x") == "starling-airflow-x"
    monkeypatch.setenv("STARLING_TOPIC_PREFIX", "t1.")
    assert settings.topic("user.logins") == "t1.user.logins"


def test_decode_records_dead_letters_carry_the_error() -> None:
    good = interaction(1, InteractionAction.LIKE, 2, 10)
    records = [
        KafkaRecord("t", 0, 0, 1, b"1", encode(good)),
        KafkaRecord("t", 0, 1, 2, b"1", b"{not json"),
    ]
    decoded = decode_records(records, UserInteraction)
    assert decoded.events == [good]
    letter = dead_letter_message(decoded.dead_letters[0], "airflow:test")
    headers = dict(letter.headers)
    assert headers["starling.error.kind"] == b"malformed"
    assert headers["starling.source.offset"] == b"1"
    assert letter.value == b"{not json"


def test_derived_ids_are_stable() -> None:
    assert derived_event_id("a", 1) == derived_event_id("a", 1) != derived_event_id("a", 2)


def test_validate_payloads_rejects_wrong_type_for_topic() -> None:
    with pytest.raises(InvalidEventError, match="event #0 for topic recommendations"):
        validate_payloads("recommendations", [encode(login(True))])
    with pytest.raises(ValueError, match="DLQ"):
        validate_payloads("recommendations.dlq", [])


def test_login_watcher_payload_is_json_and_none_for_invalid_records() -> None:
    for event, user in ((login(True), 7), (sign_in(LoginOutcome.UNKNOWN_ACCOUNT, None), None)):
        payload = login_trigger_payload(encode(event))
        assert payload is not None
        assert payload["event_id"] == str(event.event_id) and payload["user_id"] == user
        assert base64.b64decode(payload["value"]) == encode(event)
    assert login_trigger_payload(b"nope") is None
    assert login_trigger_payload(None) is None


def test_producer_function_yields_keyed_validated_events() -> None:
    event = login(True)
    assert list(encoded_events([encode(event)])) == [(b"7", encode(event))]


def test_login_trigger_serializes_to_an_importable_class_with_its_arguments() -> None:
    import importlib

    from starling_operators.triggers import LoginDeadLetterProducer, LoginStreamTrigger

    trigger = LoginStreamTrigger(topics=["b", "a"], dlq_topic="a.dlq", poll_timeout=2)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is LoginStreamTrigger
    again = cls(**kwargs)
    assert again.serialize() == (path, kwargs)
    # Sorted topics: triggers on the same set share one consumer in the triggerer.
    assert kwargs["topics"] == ["a", "b"] and kwargs["dlq_topic"] == "a.dlq"
    # Ack mode (commit after persist) needs our producer, which keeps the DLQ topic.
    producer = cls.create_shared_stream_producer(kwargs)
    assert isinstance(producer, LoginDeadLetterProducer) and producer.dlq_topic == "a.dlq"


def test_login_trigger_fires_for_valid_logins_only() -> None:
    import asyncio
    from collections.abc import AsyncIterator

    from starling_operators.triggers import LoginStreamTrigger

    valid, valid_v2 = login(True), sign_in(LoginOutcome.RATE_LIMITED, user_id=None)

    async def stream() -> AsyncIterator[bytes]:
        for value in (encode(valid), b"{oops", b'{"type": "user.login"}', encode(valid_v2)):
            yield value

    async def collect() -> list[Any]:
        trigger = LoginStreamTrigger(topics=["user.logins"], dlq_topic="user.logins.dlq")
        # Outside the triggerer's ack window a reject is a logged no-op: only what fires
        # is checked here; the dead-lettering is proven through the real triggerer.
        return [event.payload async for event in trigger.filter_shared_stream(stream())]

    payloads = asyncio.run(collect())
    assert [p["event_id"] for p in payloads] == [str(valid.event_id), str(valid_v2.event_id)]
