"""Timelines without Airflow: the service says at start what it waits for and, until the
first recommendation arrives, says periodically that none came and where they come from;
then it stops saying so. On the real store, as the service runs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Message

from starling.events import Recommendation, RecommendationKind, RecommendedItem, new_event
from starling.runtime.config import RuntimeSettings
from starling.runtime.handler import Outbox, Record
from starling.services.timelines import TimelinesHandler, TimelinesSettings
from starling.store import keys

if TYPE_CHECKING:
    import redis

    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

NOTICE_S = 0.2
AIRFLOW_HINT = "they come from the Airflow recommendations DAG"


def notices(caplog: pytest.LogCaptureFixture) -> int:
    return sum("no recommendations consumed yet" in message for message in caplog.messages)


def tick_for(handler: TimelinesHandler, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        handler.tick(Outbox())
        time.sleep(0.02)


def test_idle_timelines_say_what_they_wait_for_until_the_first_recommendation(
    redis_server: RedisServer, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = RuntimeSettings(
        starling_service="timelines",
        kafka_bootstrap_servers="unused:9092",
        store_host=redis_server.host,
        store_port=redis_server.port,
        starling_topic_prefix="dev.",
    )
    with caplog.at_level(logging.INFO, logger="starling.timelines"):
        handler = TimelinesHandler(
            settings, settings=TimelinesSettings(timelines_idle_notice_s=NOTICE_S)
        )
        try:
            assert any(
                "waiting for recommendations on dev.recommendations" in message
                and "Airflow recommendations DAG" in message
                for message in caplog.messages
            )
            tick_for(handler, NOTICE_S / 2)
            assert notices(caplog) == 0  # not before the interval
            tick_for(handler, 3 * NOTICE_S)
            assert 2 <= notices(caplog) <= 4  # periodic, not once per tick
            assert all(
                AIRFLOW_HINT in message
                for message in caplog.messages
                if "no recommendations consumed yet" in message
            )

            recommendation = new_event(
                Recommendation,
                user_id=10,
                kind=RecommendationKind.TWEETS,
                items=[RecommendedItem(item_id=555, score=1.0)],
                model="test",
            )
            message = Message(topic="dev.recommendations", partition=0, offset=0)
            handler.handle([Record(message, recommendation)], Outbox())
            assert redis_client.zscore(keys.timeline(10), 555) is not None
            assert "timelines: first recommendations consumed (1)" in caplog.messages
            before = notices(caplog)
            tick_for(handler, 3 * NOTICE_S)
            assert notices(caplog) == before  # no longer idle: nothing more to say
        finally:
            handler.close()
