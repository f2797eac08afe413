"""Our operators, sensor and failure callback against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from starling.events import LoginOutcome, Platform, UserLogin, encode, new_event
from starling.topics import CATALOG, RECOMMENDATIONS, TWEETS
from starling_operators import kafka as kafka_helpers
from starling_operators.callbacks import PublishTaskFailure
from starling_operators.operators import (
    ConsumerLagSensor,
    EnsureTopicsOperator,
    StarlingProduceOperator,
)
from starling_operators.publish import InvalidEventError
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import read_topic

pytestmark = pytest.mark.integration


def recommendation_payload(user: int) -> bytes:
    from starling.events import Recommendation, RecommendationKind, RecommendedItem

    return encode(
        new_event(
            Recommendation,
            user_id=user,
            kind=RecommendationKind.WHO_TO_FOLLOW,
            items=[RecommendedItem(item_id=2, score=1.0)],
            model="test",
        )
    )


def test_produce_operator_validates_then_delivers_all(starling_env: dict[str, str]) -> None:
    topic = starling_env["prefix"] + RECOMMENDATIONS
    operator = StarlingProduceOperator(
        task_id="produce",
        topic=RECOMMENDATIONS,
        payloads=[recommendation_payload(1), recommendation_payload(2).decode()],
    )
    assert operator.execute({}) == 2  # type: ignore[arg-type]
    assert len(read_topic(starling_env["bootstrap"], topic)) == 2

    login = new_event(
        UserLogin,
        user_id=1,
        username="u1",
        outcome=LoginOutcome.SUCCEEDED,
        success=True,
        ip="1.1.1.1",
        country="US",
        device_id="d",
        platform=Platform.WEB,
    )
    bad = StarlingProduceOperator(
        task_id="bad",
        topic=RECOMMENDATIONS,
        payloads=[recommendation_payload(3), encode(login)],
    )
    with pytest.raises(InvalidEventError, match="event #1"):
        bad.execute({})  # type: ignore[arg-type]
    assert len(read_topic(starling_env["bootstrap"], topic)) == 2  # nothing of the batch sent

    with pytest.raises(KeyError):
        StarlingProduceOperator(task_id="typo", topic="recomendations", payloads=[])


def test_ensure_topics_dag_creates_then_leaves_alone(
    starling_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARLING_TOPIC_PREFIX", "ens" + starling_env["prefix"])
    run = load_dag("starling_topics.py").test()
    assert run.state == "success"
    again = EnsureTopicsOperator(task_id="again").execute({})  # type: ignore[arg-type]
    assert again["created"] == []
    assert len(again["existing"]) == len(CATALOG.names())


def test_lag_sensor_sees_committed_progress(starling_env: dict[str, str]) -> None:
    config = {"bootstrap.servers": starling_env["bootstrap"]}
    topic = starling_env["prefix"] + TWEETS
    kafka_helpers.produce_all(
        config, topic, [kafka_helpers.OutgoingMessage(b"k", b"v") for _ in range(5)]
    )
    sensor = ConsumerLagSensor(
        task_id="lag", group_id="starling-airflow-lagtest", topics=[TWEETS], max_lag=0
    )
    assert sensor.poke({}) is False  # type: ignore[arg-type]
    records = read_topic(starling_env["bootstrap"], topic)
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    kafka_helpers.commit_progress(config, "starling-airflow-lagtest", topic, ends)
    assert sensor.poke({}) is True  # type: ignore[arg-type]


def test_failure_callback_publishes_to_the_dlq(starling_env: dict[str, str]) -> None:
    class TI:
        dag_id, task_id, run_id, try_number = "d", "t", "r", 1

    callback = PublishTaskFailure("user.logins.dlq")
    callback({"ti": TI(), "exception": RuntimeError("boom")})
    records = read_topic(starling_env["bootstrap"], starling_env["prefix"] + "user.logins.dlq")
    assert len(records) == 1
    assert b"RuntimeError: boom" in (records[0].value or b"")
    assert dict(records[0].headers)["starling.error.kind"] == b"task_failed"


def test_interval_read_is_exact_by_timestamp(starling_env: dict[str, str]) -> None:
    config = {"bootstrap.servers": starling_env["bootstrap"]}
    topic = starling_env["prefix"] + TWEETS
    base = datetime(2026, 3, 1, tzinfo=UTC)
    ms = int(base.timestamp() * 1000)
    kafka_helpers.produce_all(
        config,
        topic,
        [
            kafka_helpers.OutgoingMessage(str(i).encode(), b"v", timestamp_ms=ms + i * 1000)
            for i in range(30)
        ],
    )
    read = kafka_helpers.read_interval(
        config, topic, base + timedelta(seconds=10), base + timedelta(seconds=20), "starling-x"
    )
    assert sorted(int(r.key or b"") for r in read.records) == list(range(10, 20))
    assert sum(read.end_offsets.values()) >= 20
