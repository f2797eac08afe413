"""Faults during traffic: poison messages, a consumer SIGKILLed mid-batch, a broker
stopped, the store restarted. Each prints events sent, effects observed, lost and
duplicated; the goal is zero lost and zero duplicated effects."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis as redis_lib

from starling.events import Platform, TweetCreated, decode, encode, new_event
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.loadgen.sink import KafkaSink, TopicRouter, producer_config, send_events
from starling.services.ingestion import IngestionHandler, IngestionSettings
from starling.store.client import connect
from starling.store.graph import load_loadgen_graph
from starling.store.timelines import TimelineStore
from starling.topics import TWEETS, TWEETS_ENRICHED
from tests.integration.services import reference
from tests.integration.services.helpers import (
    Deployment,
    ThreadedRuntime,
    new_prefix,
    read_topic,
    service_command,
    wait_for,
)

if TYPE_CHECKING:
    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAP = 30


def tweet_traffic(tweets: int, seed: int) -> tuple[TrafficGenerator, list[TweetCreated]]:
    generator = TrafficGenerator(TrafficConfig(seed=seed, users=200, mix=(100.0, 0.0, 0.0)))
    events = [e for e in generator.events(int(tweets * 1.3)) if isinstance(e, TweetCreated)]
    return generator, events[:tweets]


def send_in_background(
    kafka: KafkaCluster, prefix: str, events: list[Any], rate: float
) -> threading.Thread:
    def run() -> None:
        sink = KafkaSink(producer_config(kafka.bootstrap_servers))
        report = send_events(events, sink, TopicRouter(prefix=prefix), rate=rate)
        assert report.ok, report.summary()

    thread = threading.Thread(target=run, name="traffic")
    thread.start()
    return thread


def timeline_entries(client: redis_lib.Redis, users: range) -> int:
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.zcard(f"tl:{user}")
    return sum(int(count) for count in pipe.execute())


def report_effects(
    name: str,
    deployment: Deployment,
    client: redis_lib.Redis,
    generator: TrafficGenerator,
    tweets: list[TweetCreated],
) -> None:
    """Compare timelines with the reference and enriched output with the input; print
    the counts and fail on any lost or duplicated effect."""
    expected = reference.expected_timelines(tweets, generator.graph, CAP)
    store = TimelineStore(client, CAP)
    observed = {user: store.timeline(user, limit=CAP * 2) for user in expected}
    lost = sum(len(set(ids) - set(observed[user])) for user, ids in expected.items())
    duplicated = sum(len(ids) - len(set(ids)) for ids in observed.values())
    extra = sum(len(set(observed[user]) - set(ids)) for user, ids in expected.items())
    enriched = read_topic(deployment.kafka, deployment.topic(TWEETS_ENRICHED), len(tweets))
    by_tweet = Counter(decode(m.value()).tweet_id for m in enriched)  # type: ignore[union-attr]
    missing_enriched = len({t.tweet_id for t in tweets} - set(by_tweet))
    republished = sum(count - 1 for count in by_tweet.values())
    print(
        f"\n{name}: sent {len(tweets):,} tweets; timeline entries expected"
        f" {sum(len(v) for v in expected.values()):,}, observed"
        f" {sum(len(v) for v in observed.values()):,}; lost {lost + missing_enriched},"
        f" duplicated {duplicated + extra}; enriched republished after redelivery"
        f" {republished} (same event ids, deduplicated downstream)"
    )
    assert lost == 0 and missing_enriched == 0
    assert duplicated == 0 and extra == 0
    assert observed == expected
    ids_per_tweet = {decode(m.value()).event_id for m in enriched}
    assert len(ids_per_tweet) == len(tweets), "a redelivered tweet got a new enriched id"


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
        if runtime.alive:
            runtime.stop()


def test_poison_messages_go_to_the_dlq_with_reasons_and_the_rest_is_processed(
    deployment: Deployment, redis_client: redis_lib.Redis, runtimes: list[ThreadedRuntime]
) -> None:
    from confluent_kafka import Producer

    generator, tweets = tweet_traffic(2000, seed=5)
    load_loadgen_graph(redis_client, generator)
    poison: list[tuple[bytes | None, str, str | None]] = [
        (b"not json at all", "malformed", None),
        (b'{"type": "tweet.created"}', "invalid", "$.event_id"),
        (encode(_login_event()), "wrong_type", "$.type"),
        (b'{"type": "nope"}', "unknown_type", "$.type"),
        (b"{" + b" " * 70_000 + b"}", "too_large", None),
        (None, "malformed", None),
        (encode(_blank_tweet()), "invalid", "$.text"),
    ]
    producer = Producer({"bootstrap.servers": deployment.kafka.bootstrap_servers})
    topic = deployment.topic(TWEETS)
    for index, tweet in enumerate(tweets):
        producer.produce(topic, encode(tweet), tweet.partition_key())
        if index % 300 == 0 and index // 300 < len(poison):
            payload = poison[index // 300][0]
            producer.produce(topic, payload, f"poison-{index // 300}".encode())
    assert producer.flush(10) == 0

    handler = IngestionHandler(
        deployment.settings("ingestion"), settings=IngestionSettings(timeline_cap=CAP)
    )
    runtime = ThreadedRuntime(deployment.settings("ingestion"), handler).start()
    runtimes.append(runtime)
    dead = read_topic(deployment.kafka, topic + ".dlq", len(poison), timeout=60)
    wait_for(lambda: timeline_entries(redis_client, generator.graph.user_ids) > 0, 30, "fan-out")
    report_effects("poison", deployment, redis_client, generator, tweets)

    assert len(dead) == len(poison)
    by_key = {m.key(): dict(m.headers()) for m in dead}
    for index, (_payload, kind, field) in enumerate(poison):
        headers = by_key[f"poison-{index}".encode()]
        assert headers["starling.error.kind"].decode() == kind
        assert headers["starling.error.field"].decode() == (field or "")
        assert headers["starling.error.message"]
        assert headers["starling.source.topic"].decode() == topic
        assert int(headers["starling.source.offset"]) >= 0
        assert headers["starling.service"] == b"ingestion"
        assert headers["starling.failed_at"]
    values = {m.key(): m.value() for m in dead}
    assert values[b"poison-0"] == b"not json at all"
    metrics = runtime.runtime.metrics
    assert metrics.dead_lettered.labels("ingestion", topic)._value.get() == len(poison)
    print(f"poison: {len(poison)} poison messages dead-lettered with reasons")


def _login_event() -> Any:
    from starling.events import LoginOutcome, UserLogin

    return new_event(
        UserLogin,
        user_id=1,
        username="u1",
        outcome=LoginOutcome.SUCCEEDED,
        success=True,
        ip="10.0.0.1",
        country="NL",
        device_id="d",
        platform=Platform.WEB,
    )


def _blank_tweet() -> TweetCreated:
    return new_event(TweetCreated, tweet_id=99, author_id=1, text="\u200b", platform=Platform.WEB)


def test_consumer_sigkilled_mid_batch_loses_and_duplicates_nothing(
    deployment: Deployment, redis_client: redis_lib.Redis
) -> None:
    generator, tweets = tweet_traffic(12_000, seed=6)
    load_loadgen_graph(redis_client, generator)
    env = deployment.env("ingestion", STARLING_TIMELINE_CAP=str(CAP), STARLING_BATCH_SIZE="200")
    sender = send_in_background(deployment.kafka, deployment.prefix, tweets, rate=3000)
    kills = 0
    process = subprocess.Popen(service_command("ingestion"), env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(2):
            # Kill once it is busy: traffic keeps arriving, so a batch is in flight.
            done = _committed(deployment, "ingestion")
            _wait_group_done(deployment, "ingestion", done + 1000)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            kills += 1
            process = subprocess.Popen(
                service_command("ingestion"), env=env, stderr=subprocess.DEVNULL
            )
        sender.join(60)
        _wait_group_done(deployment, "ingestion", len(tweets))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, f"graceful stop after SIGTERM exited {code}"
    print(f"\nkilled ingestion with SIGKILL {kills} times mid-traffic")
    report_effects("sigkill", deployment, redis_client, generator, tweets)


def _committed(deployment: Deployment, service: str) -> int:
    """Messages of the input topic committed by the service's group."""
    from confluent_kafka import Consumer, TopicPartition

    settings = deployment.settings(service)
    consumer = Consumer(
        {"bootstrap.servers": deployment.kafka.bootstrap_servers, "group.id": settings.group_id}
    )
    topic = deployment.topic(TWEETS)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum(max(0, tp.offset) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def _wait_group_done(deployment: Deployment, service: str, expected: int) -> None:
    """At least `expected` input messages have been committed by the service's group."""
    wait_for(lambda: _committed(deployment, service) >= expected, 120, "offsets committed")


def test_broker_stopped_and_restarted_during_traffic(
    kafka_cluster3: KafkaCluster, redis_client: redis_lib.Redis, redis_server: RedisServer
) -> None:
    deployment = Deployment(
        kafka_cluster3, new_prefix(), redis_server.host, redis_server.port, brokers=3
    )
    deployment.create_topics()
    generator, tweets = tweet_traffic(10_000, seed=7)
    load_loadgen_graph(redis_client, generator)
    handler = IngestionHandler(
        deployment.settings("ingestion"), settings=IngestionSettings(timeline_cap=CAP)
    )
    runtime = ThreadedRuntime(deployment.settings("ingestion"), handler).start()
    try:
        sender = send_in_background(kafka_cluster3, deployment.prefix, tweets, rate=2000)
        time.sleep(1.5)
        kafka_cluster3.stop_node(1)
        time.sleep(2.0)
        kafka_cluster3.start_node(1)
        sender.join(90)
        _wait_group_done(deployment, "ingestion", len(tweets))
        assert runtime.error is None
    finally:
        runtime.stop()
    print("\nstopped broker 1 (controlled shutdown) for 2 s during traffic")
    report_effects("broker-restart", deployment, redis_client, generator, tweets)


def test_store_restarted_during_traffic(kafka: KafkaCluster) -> None:
    from starling.harness.redis import RedisServer

    with RedisServer.start(appendonly=True) as server:
        client = redis_lib.Redis(host=server.host, port=server.port)
        deployment = Deployment(kafka, new_prefix(), server.host, server.port)
        deployment.create_topics()
        generator, tweets = tweet_traffic(10_000, seed=8)
        load_loadgen_graph(client, generator)
        handler = IngestionHandler(
            deployment.settings("ingestion"),
            client=connect(host=server.host, port=server.port),
            settings=IngestionSettings(timeline_cap=CAP),
        )
        runtime = ThreadedRuntime(deployment.settings("ingestion"), handler).start()
        try:
            sender = send_in_background(kafka, deployment.prefix, tweets, rate=2500)
            wait_for(lambda: _entries_or_zero(client, generator) > 1000, 30, "fan-out")
            server.kill()  # a crash; appendfsync always keeps every acknowledged write
            # Longer than the client library's own reconnect attempts, so the runtime's
            # retry with backoff is what carries the batch through.
            time.sleep(4.0)
            server.restart()
            sender.join(60)
            _wait_group_done(deployment, "ingestion", len(tweets))
            assert runtime.error is None
            retries = runtime.runtime.metrics.retries.labels("ingestion")._value.get()
        finally:
            runtime.stop()
        print(f"\nkilled and restarted the store during traffic; {retries:.0f} batch retries")
        assert retries >= 1
        report_effects("store-restart", deployment, client, generator, tweets)
        client.close()


def _entries_or_zero(client: redis_lib.Redis, generator: TrafficGenerator) -> int:
    try:
        return timeline_entries(client, generator.graph.user_ids)
    except redis_lib.exceptions.ConnectionError:
        return 0
