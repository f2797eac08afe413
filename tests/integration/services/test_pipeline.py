"""End to end on a real broker and Redis: generated traffic in, then timelines, trends and
notifications in the store equal what the reference computation says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from starling.events import (
    InteractionAction,
    Platform,
    Recommendation,
    RecommendationKind,
    RecommendedItem,
    TweetCreated,
    decode,
    encode,
    new_event,
)
from starling.loadgen import Burst, TrafficConfig, TrafficGenerator
from starling.loadgen.sink import KafkaSink, TopicRouter, producer_config, send_events
from starling.services.bursts import Detected, DetectionConfig
from starling.services.ingestion import IngestionHandler, IngestionSettings
from starling.services.notifier import NotifierHandler, NotifierSettings
from starling.services.timelines import TimelinesHandler, TimelinesSettings
from starling.services.trends import TrendsHandler, TrendsSettings
from starling.store import keys
from starling.store.graph import load_loadgen_graph
from starling.store.notifications import NotificationStore
from starling.store.timelines import TimelineStore
from starling.store.trends import TrendStore
from starling.topics import NOTIFICATIONS, RECOMMENDATIONS, TRENDS, TWEETS_ENRICHED
from tests.integration.services import reference
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAP = 40
WINDOW_S = 5
TREND_SETTINGS = TrendsSettings(
    window_s=WINDOW_S,
    baseline_windows=4,
    min_history=2,
    min_count=5,
    threshold=1.0,
    top_n=5,
    lateness_s=3.0,
    idle_partition_s=4.0,
)
# No follow/unfollow/block/mute: those change the graph while tweets fan out, and which
# comes first is a race the reference cannot call (graph upkeep is tested on its own).
STATIC_GRAPH_WEIGHTS = (
    (InteractionAction.LIKE, 60.0),
    (InteractionAction.RETWEET, 20.0),
    (InteractionAction.UNLIKE, 3.0),
)


def traffic(events: int, seed: int = 11) -> tuple[TrafficGenerator, list[Any]]:
    generator = TrafficGenerator(
        TrafficConfig(
            seed=seed,
            users=300,
            events_per_second=1000.0,
            interaction_weights=STATIC_GRAPH_WEIGHTS,
            hashtag_vocabulary=60,
            bursts=(Burst("eclipse", 15.0, 6.0, 300.0),),
        )
    )
    return generator, list(generator.events(events))


def closing_tweet(last: Any, after_s: float) -> TweetCreated:
    """A tweet without hashtags late enough in event time to close every window (in a
    live stream, time moving on does this)."""
    return new_event(
        TweetCreated,
        event_time=last.event_time + timedelta(seconds=after_s),
        tweet_id=2**62,
        author_id=1,
        text="that is all for today",
        platform=Platform.WEB,
    )


def send(kafka: KafkaCluster, prefix: str, events: list[Any]) -> None:
    sink = KafkaSink(producer_config(kafka.bootstrap_servers))
    report = send_events(events, sink, TopicRouter(prefix=prefix))
    assert report.ok, report.summary()


@pytest.fixture
def deployment(kafka: KafkaCluster, redis_server: RedisServer) -> Deployment:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


@pytest.fixture
def runtimes() -> Iterator[list[ThreadedRuntime]]:
    started: list[ThreadedRuntime] = []
    yield started
    for runtime in started:
        runtime.stop()


def test_generated_traffic_gives_reference_timelines_trends_and_notifications(
    deployment: Deployment,
    redis_client: redis.Redis,
    runtimes: list[ThreadedRuntime],
) -> None:
    generator, events = traffic(30_000)
    events.append(closing_tweet(events[-1], WINDOW_S + 2 * TREND_SETTINGS.lateness_s))
    load_loadgen_graph(redis_client, generator)
    tweets = [event for event in events if isinstance(event, TweetCreated)]
    recommendations = [
        new_event(
            Recommendation,
            user_id=user,
            kind=RecommendationKind.TWEETS,
            items=[RecommendedItem(item_id=tweet.tweet_id, score=1.0) for tweet in tweets[:3]],
            model="test",
        )
        for user in (1, 2, 3)
    ] + [
        new_event(
            Recommendation,
            user_id=5,
            kind=RecommendationKind.WHO_TO_FOLLOW,
            items=[RecommendedItem(item_id=7, score=0.5, reason="fof")],
            model="test",
        )
    ]

    def start(service: str, handler: Any) -> None:
        runtimes.append(ThreadedRuntime(deployment.settings(service), handler).start())

    started = time.monotonic()
    start(
        "ingestion",
        IngestionHandler(
            deployment.settings("ingestion"),
            settings=IngestionSettings(timeline_cap=CAP),
        ),
    )
    start("trends", TrendsHandler(deployment.settings("trends"), settings=TREND_SETTINGS))
    start(
        "timelines",
        TimelinesHandler(
            deployment.settings("timelines"), settings=TimelinesSettings(timeline_cap=CAP)
        ),
    )
    notifier = NotifierHandler(
        deployment.settings("notifier"),
        settings=NotifierSettings(fatigue_cap=100_000, inbox_cap=100_000),
    )
    start("notifier", notifier)
    send(deployment.kafka, deployment.prefix, events)
    _produce(deployment, recommendations)

    expected_notes = reference.expected_notifications(events)
    notes = NotificationStore(redis_client, fatigue_cap=1, fatigue_window_s=1)

    def delivered_count() -> int:
        return sum(
            int(redis_client.hlen(keys.notification_state(user)))
            for user in generator.graph.user_ids
        )

    wait_for(lambda: delivered_count() >= len(expected_notes), 120, "notifications decided")
    counts = reference.window_counts(events, WINDOW_S)

    def all_closed() -> bool:
        for runtime in runtimes:
            if runtime.error is not None:
                raise runtime.error
        closed = TrendStore(redis_client, 60).closed_windows()
        return len(closed) >= len(counts)

    wait_for(
        all_closed,
        60,
        "every trend window closed",
    )
    elapsed = time.monotonic() - started

    # Timelines: exactly the reference, in order.
    expected = reference.expected_timelines(events, generator.graph, CAP, recommendations)
    timeline_store = TimelineStore(redis_client, CAP)
    actual = {user: timeline_store.timeline(user, limit=CAP + 10) for user in expected}
    lost = sum(len(set(ids) - set(actual[user])) for user, ids in expected.items())
    extra = sum(len(set(actual[user]) - set(ids)) for user, ids in expected.items())
    assert lost == 0 and extra == 0
    assert actual == expected
    assert redis_client.hget(keys.who_to_follow(5), "items") is not None

    # Notifications: every expected one delivered in-app, nothing else.
    inboxes = {user: notes.inbox(user, limit=100_000) for user in generator.graph.user_ids}
    observed = {
        reference.ExpectedNotification(user, entry.kind, entry.source_event_id, entry.actor_id or 0)
        for user, entries in inboxes.items()
        for entry in entries
    }
    total_entries = sum(len(entries) for entries in inboxes.values())
    assert total_entries == len(observed), "an inbox holds a notification twice"
    assert observed == expected_notes

    trends_handler = runtimes[1].handler
    assert isinstance(trends_handler, TrendsHandler)
    expected_trends = assert_trends_match_reference(redis_client, trends_handler, counts, generator)

    # Published events: every enriched tweet, every trend and every candidate, by id.
    enriched = read_topic(deployment.kafka, deployment.topic(TWEETS_ENRICHED), len(tweets))
    assert {decode(m.value()).tweet_id for m in enriched} == {t.tweet_id for t in tweets}  # type: ignore[union-attr]
    trend_messages = read_topic(deployment.kafka, deployment.topic(TRENDS))
    assert len({decode(m.value()).event_id for m in trend_messages}) == sum(
        len(found) for found in expected_trends.values()
    )
    candidates = read_topic(deployment.kafka, deployment.topic(NOTIFICATIONS))
    tweet_driven = {n for n in expected_notes if n.kind in ("reply", "mention")}
    assert len({decode(m.value()).event_id for m in candidates}) == len(tweet_driven)
    print(
        f"\npipeline: {len(events):,} events ({len(tweets):,} tweets) -> "
        f"{sum(len(v) for v in actual.values()):,} timeline entries, "
        f"{len(observed):,} notifications, "
        f"{sum(len(f) for f in expected_trends.values())} trends in {len(counts)} windows; "
        f"lost {lost}, duplicated {extra + total_entries - len(observed)}; {elapsed:.1f} s"
    )


def assert_trends_match_reference(
    redis_client: redis.Redis,
    trends_handler: TrendsHandler,
    counts: dict[int, dict[str, int]],
    generator: TrafficGenerator,
) -> dict[int, list[Detected]]:
    """No tweet arrived after its window closed, every window's trends equal the
    reference detector over reference counts, and the injected burst trended."""
    config = DetectionConfig(
        baseline_windows=TREND_SETTINGS.baseline_windows,
        min_history=TREND_SETTINGS.min_history,
        min_count=TREND_SETTINGS.min_count,
        threshold=TREND_SETTINGS.threshold,
        top_n=TREND_SETTINGS.top_n,
    )
    expected_trends = reference.expected_trends(counts, WINDOW_S, config)
    assert trends_handler.late_events == 0
    trend_store = TrendStore(redis_client, 60)
    for window, found in expected_trends.items():
        stored = trend_store.window_trends(window)
        assert stored is not None, f"window {window} not closed"
        assert [(t.hashtag, t.count, t.rank) for t in stored] == [
            (f.hashtag, f.count, f.rank) for f in found
        ], f"window {window}"
    burst = generator.bursts[0]
    trending_during_burst = {
        t.hashtag
        for window, found in expected_trends.items()
        if burst.start.timestamp() <= window + WINDOW_S and window <= burst.end.timestamp()
        for t in found
    }
    assert burst.hashtag in trending_during_burst
    return expected_trends


def _produce(deployment: Deployment, events: list[Recommendation]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": deployment.kafka.bootstrap_servers})
    for event in events:
        producer.produce(deployment.topic(RECOMMENDATIONS), encode(event), event.partition_key())
    assert producer.flush(10) == 0
