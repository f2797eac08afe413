"""The current (open) window's leaders: counted by the real trends service from a real
topic into a real store, read back through `current_leaders` and the gateway's
`GET /v1/trends`, long before any window closes or detection has history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema
import pytest
from confluent_kafka import Message, Producer

from starling.events import TweetEnriched, encode, new_event
from starling.runtime.config import RuntimeSettings
from starling.runtime.handler import Outbox, Record
from starling.services.trends import TrendsHandler, TrendsSettings, window_of
from starling.store import keys
from starling.store.trends import CurrentWindow, Leader, current_leaders
from starling.topics import TWEETS_ENRICHED
from tests.integration.services.gateway_server import start_gateway
from tests.integration.services.helpers import Deployment, ThreadedRuntime, new_prefix, wait_for
from tests.tokens import TokenIssuer

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

WINDOW_S = 300
OPENAPI = Path(__file__).parents[3] / "services/starling/gateway/openapi.json"
# A long window and lateness: nothing closes during the test, so only `current` can show.
SETTINGS = TrendsSettings(window_s=WINDOW_S, lateness_s=3600)


def enriched(tweet_id: int, at: datetime, *hashtags: str) -> TweetEnriched:
    return new_event(
        TweetEnriched,
        event_time=at,
        tweet_id=tweet_id,
        author_id=7,
        text=" ".join(f"#{tag}" for tag in hashtags) or "plain",
        hashtags=list(hashtags),
        mentions=[],
        lang="en",
        sentiment=0.0,
        source_event_id=uuid.uuid4(),
    )


def records(*tweets: TweetEnriched) -> list[Record]:
    return [
        Record(Message(topic="tweets.enriched", partition=0, offset=i), tweet)
        for i, tweet in enumerate(tweets)
    ]


@pytest.fixture
def handler(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[TrendsHandler]:
    # The handler alone, on the real store: the broker side is the gateway test below.
    settings = RuntimeSettings(
        starling_service="trends",
        kafka_bootstrap_servers="unused:9092",
        store_host=redis_server.host,
        store_port=redis_server.port,
    )
    trends = TrendsHandler(settings, settings=SETTINGS)
    try:
        yield trends
    finally:
        trends.close()


def test_leaders_of_the_latest_window_counted_once_each_and_ranked(
    handler: TrendsHandler, redis_client: redis.Redis
) -> None:
    assert current_leaders(redis_client) is None  # nothing counted: no window at all
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    previous = start - timedelta(seconds=WINDOW_S)
    first = [
        enriched(1, start, "aurora", "eclipse"),
        enriched(2, start + timedelta(seconds=1), "aurora"),
        enriched(3, start + timedelta(seconds=2), "aurora", "comet"),
        enriched(4, start + timedelta(seconds=3), "eclipse"),
        enriched(5, start + timedelta(seconds=4)),  # no hashtag: counts nowhere
        enriched(6, previous, "old"),
    ]
    handler.handle(records(*first), Outbox())
    # Redelivered (a retried batch): the counts must not move.
    handler.handle(records(*first[:3]), Outbox())
    window = window_of(start, WINDOW_S)
    expected = CurrentWindow(
        window_start=window,
        leaders=[Leader("aurora", 3), Leader("eclipse", 2), Leader("comet", 1)],
    )
    assert current_leaders(redis_client) == expected
    assert current_leaders(redis_client, top_n=2) == CurrentWindow(
        window_start=window, leaders=expected.leaders[:2]
    )
    # A late tweet for the previous window is counted there but does not move the view back.
    handler.handle(records(enriched(7, previous + timedelta(seconds=5), "old")), Outbox())
    assert current_leaders(redis_client) == expected
    assert redis_client.hget(keys.trend_counts(window - WINDOW_S), "old") == b"2"
    # The next window takes over as soon as its first hashtag is counted.
    later = start + timedelta(seconds=WINDOW_S)
    handler.handle(records(enriched(8, later, "comet")), Outbox())
    assert current_leaders(redis_client) == CurrentWindow(
        window_start=window + WINDOW_S, leaders=[Leader("comet", 1)]
    )
    # Ranked counts expire with the window's counts.
    ttl: Any = redis_client.ttl(keys.trend_rank(window))
    assert 0 < ttl <= handler.store.retention_s


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.start() as running:
        yield running


def test_gateway_serves_the_open_windows_leaders_beside_the_detected_trends(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    schema = json.loads(OPENAPI.read_text())
    trends_schema = {**schema["components"]["schemas"]["Trends"], "$defs": {}}
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    now = datetime.now(UTC)
    for tweet_id, tags in enumerate([("starling",), ("starling", "kafka"), ("starling",)], 1):
        tweet = enriched(tweet_id, now, *tags)
        producer.produce(deployment.topic(TWEETS_ENRICHED), encode(tweet), tweet.partition_key())
    assert producer.flush(10) == 0

    settings = deployment.settings("trends")
    service = ThreadedRuntime(
        settings, TrendsHandler(settings, settings=SETTINGS), serve_metrics=False
    ).start()
    try:
        with (
            start_gateway(deployment, issuer) as running,
            httpx.Client(base_url=running.url) as http,
        ):

            def body() -> dict[str, Any]:
                response = http.get("/v1/trends")
                assert response.status_code == 200
                found: dict[str, Any] = response.json()
                return found

            wait_for(lambda: body()["current"] is not None, 30, "the window's first counts")
            wait_for(lambda: body()["current"]["leaders"][0]["count"] == 3, 30, "all three tweets")
            served = body()
            jsonschema.validate(served, trends_schema)
            assert served == {
                "trends": [],  # no window closed: detection has nothing to say yet
                "current": {
                    "window_start": window_of(now, WINDOW_S),
                    "leaders": [
                        {"hashtag": "starling", "count": 3},
                        {"hashtag": "kafka", "count": 1},
                    ],
                },
            }
    finally:
        service.stop()
    assert service.error is None
