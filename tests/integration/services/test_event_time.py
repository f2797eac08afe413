"""Event time is honoured end to end, on a real broker and store:

* a tweet claiming 2099 on a quiet partition closes nothing early: it is dead-lettered
  with its reason, and tweets of the current window that arrive after it are counted in
  that window, not as late;
* tweets for a window that already closed are counted by `starling_trends_late_events`,
  read from the service's metrics endpoint;
* ingestion stamps its outputs with the tweet's event time (not the moment it wrote
  them), and dead-letters a far-future tweet with its reason.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Producer

from starling.events import Platform, TweetCreated, TweetEnriched, encode, new_event
from starling.services.ingestion import IngestionHandler
from starling.services.trends import TrendsHandler, TrendsSettings, window_of
from starling.store import keys
from starling.topics import TWEETS, TWEETS_ENRICHED
from tests.integration.services.helpers import (
    Deployment,
    ThreadedRuntime,
    new_prefix,
    read_topic,
    wait_for,
)

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

WINDOW_S = 300
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
# Partitions count as idle quickly, so "everything is quiet" comes within the test.
SETTINGS = TrendsSettings(window_s=WINDOW_S, lateness_s=1.0, idle_partition_s=1.0)


def enriched(at: datetime, *hashtags: str) -> TweetEnriched:
    return new_event(
        TweetEnriched,
        event_time=at,
        tweet_id=uuid.uuid4().int % (1 << 62) + 1,
        author_id=7,
        text=" ".join(f"#{tag}" for tag in hashtags),
        hashtags=list(hashtags),
        mentions=[],
        lang="en",
        sentiment=0.0,
        source_event_id=uuid.uuid4(),
    )


@pytest.fixture
def deployment(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis
) -> Deployment:
    deployed = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployed.create_topics()
    return deployed


@pytest.fixture
def trends(deployment: Deployment) -> Iterator[ThreadedRuntime]:
    settings = deployment.settings("trends")
    service = ThreadedRuntime(settings, TrendsHandler(settings, settings=SETTINGS)).start()
    try:
        yield service
    finally:
        service.stop()
    assert service.error is None


def late_events(service: ThreadedRuntime) -> float:
    port = service.runtime.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("starling_trends_late_events_total "):
            return float(line.split()[1])
    raise AssertionError("starling_trends_late_events_total is not exported")


def produce(deployment: Deployment, topic: str, partition: int, *events: TweetEnriched) -> None:
    producer = Producer({"bootstrap.servers": deployment.kafka.bootstrap_servers})
    for event in events:
        producer.produce(
            deployment.topic(topic), encode(event), event.partition_key(), partition=partition
        )
    assert producer.flush(10) == 0


def current_window_with_room(room_s: float) -> datetime:
    """Now, once at least `room_s` of the current window is left."""
    now = time.time()
    left = WINDOW_S - now % WINDOW_S
    if left < room_s:
        time.sleep(left + 0.5)
    return datetime.now(UTC)


def test_a_far_future_tweet_on_a_quiet_partition_closes_nothing_early(
    deployment: Deployment, trends: ThreadedRuntime, redis_client: redis.Redis
) -> None:
    now = current_window_with_room(60)
    window = window_of(now, WINDOW_S)
    produce(deployment, TWEETS_ENRICHED, 1, *(enriched(now, "starling") for _ in range(3)))
    wait_for(lambda: redis_client.hget(keys.trend_counts(window), "starling") == b"3", 30, "counts")
    produce(deployment, TWEETS_ENRICHED, 0, enriched(FAR_FUTURE, "future"))
    (dead,) = read_topic(deployment.kafka, deployment.topic(TWEETS_ENRICHED) + ".dlq", 1)
    headers = dict(dead.headers())
    assert headers["starling.error.kind"] == b"event_time_in_future"
    assert headers["starling.error.field"] == b"$.event_time"
    # Every partition quiet for longer than idle_partition_s, ticks included: on today's
    # main the watermark jumped to 2099 here and closed the current window.
    time.sleep(3 * SETTINGS.idle_partition_s + 2)
    produce(deployment, TWEETS_ENRICHED, 1, *(enriched(now, "starling") for _ in range(2)))
    wait_for(lambda: redis_client.hget(keys.trend_counts(window), "starling") == b"5", 30, "counts")
    assert late_events(trends) == 0
    assert redis_client.zscore(keys.TRENDS_CLOSED, window) is None
    assert redis_client.hget(keys.trend_counts(window), "future") is None


def test_tweets_for_a_closed_window_are_counted_as_late_on_the_metrics_endpoint(
    deployment: Deployment, trends: ThreadedRuntime, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=3 * WINDOW_S)
    old_window = window_of(old, WINDOW_S)
    produce(deployment, TWEETS_ENRICHED, 0, enriched(old, "aurora"), enriched(now, "aurora"))
    # Quiet: the watermark is the latest time seen (now), past the old window's end.
    wait_for(
        lambda: redis_client.zscore(keys.TRENDS_CLOSED, old_window) is not None,
        30,
        "the old window to close",
    )
    assert late_events(trends) == 0
    produce(deployment, TWEETS_ENRICHED, 0, enriched(old + timedelta(seconds=1), "aurora"))
    wait_for(lambda: late_events(trends) == 1, 30, "the late tweet to be counted")


def test_ingestion_stamps_outputs_with_event_time_and_dead_letters_the_future(
    deployment: Deployment,
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    tweet = new_event(
        TweetCreated,
        event_time=past,
        tweet_id=11,
        author_id=7,
        text="hello #starling",
        platform=Platform.WEB,
    )
    future = new_event(
        TweetCreated,
        event_time=FAR_FUTURE,
        tweet_id=12,
        author_id=7,
        text="from the future",
        platform=Platform.WEB,
    )
    producer = Producer({"bootstrap.servers": deployment.kafka.bootstrap_servers})
    for event in (tweet, future):
        producer.produce(deployment.topic(TWEETS), encode(event), event.partition_key())
    assert producer.flush(10) == 0
    settings = deployment.settings("ingestion")
    service = ThreadedRuntime(settings, IngestionHandler(settings), serve_metrics=False).start()
    try:
        (output,) = read_topic(deployment.kafka, deployment.topic(TWEETS_ENRICHED), 1)
        (dead,) = read_topic(deployment.kafka, deployment.topic(TWEETS) + ".dlq", 1)
    finally:
        service.stop()
    assert service.error is None
    # Written now, stamped with the tweet's time: the interval DAGs select by it.
    assert output.timestamp() == (TIMESTAMP_CREATE_TIME, int(past.timestamp() * 1000))
    assert dict(dead.headers())["starling.error.kind"] == b"event_time_in_future"
