"""The traffic generator against a real broker: what goes in comes out, in key order."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from starling.events import Event, decode, encode
from starling.loadgen import Burst, TrafficConfig, TrafficGenerator
from starling.loadgen.cli import PASSWORD_ENV, register
from starling.loadgen.sink import (
    GENERATED_EVENT_TYPES,
    KafkaSink,
    TopicRouter,
    producer_config,
    send_events,
)
from starling.topics import CATALOG

if TYPE_CHECKING:
    from starling.harness.kafka import KafkaCluster

pytestmark = pytest.mark.integration

EVENTS = 20_000


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def create_generated_topics(kafka: KafkaCluster, prefix: str, **config: str) -> list[str]:
    """The catalog topics the generator writes, under `prefix`, sized for one broker."""
    catalog = CATALOG.for_cluster(1)
    names = []
    requests = []
    for event_type in GENERATED_EVENT_TYPES:
        spec = catalog.topic_for(event_type)
        names.append(prefix + spec.name)
        # The generator's records carry simulated (past) event times as timestamps:
        # unlimited retention, or the broker deletes them mid-test.
        settings = {**spec.kafka_config(), "retention.ms": "-1", **config}
        requests.append((prefix + spec.name, spec.partitions, 1, settings))
    kafka.create_topics(requests)
    return names


def consume(
    kafka: KafkaCluster, topics: list[str], expected: int, timeout: float = 90.0
) -> list[Any]:
    """Every message of `topics` from the start, stopping once `expected` have arrived
    (and a little after, to catch extras)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"loadgen-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=2000, timeout=0.5)
            for message in batch:
                assert message.error() is None, message.error()
                messages.append(message)
            if len(messages) >= expected:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return messages


def test_generated_stream_round_trips_in_key_order(
    kafka: KafkaCluster, topic_name: Callable[..., str]
) -> None:
    prefix = topic_name("loadgen") + "."
    topics = create_generated_topics(kafka, prefix)
    router = TopicRouter(prefix=prefix)
    generator = TrafficGenerator(
        TrafficConfig(seed=11, users=2000, bursts=(Burst("eclipse", 5, 3, 40),))
    )
    produced: list[Event] = list(generator.events(EVENTS))

    sink = KafkaSink(producer_config(kafka.bootstrap_servers))
    sink.check_topics(topics)
    report = send_events(iter(produced), sink, router, rate=0)
    assert report.ok, report.summary()
    assert report.delivered == EVENTS

    messages = consume(kafka, topics, EVENTS)
    assert len(messages) == EVENTS

    # Same contents: every (topic, key, payload) produced is consumed exactly once.
    expected_by_key: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    for event in produced:
        expected_by_key[(router.topic_for(event), event.partition_key())].append(encode(event))
    consumed_by_key: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    partitions_of_key: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    for message in messages:
        key = (message.topic(), message.key())
        consumed_by_key[key].append(message.value())
        partitions_of_key[key].add(message.partition())
        event = decode(message.value())  # validates every payload
        assert router.topic_for(event) == message.topic()
        assert event.partition_key() == message.key()
        # Stamped with the event time, not the moment it was produced.
        assert message.timestamp() == (TIMESTAMP_CREATE_TIME, _millis(event.event_time))

    # Per-key order preserved: each key's messages come back in the order produced.
    assert consumed_by_key == expected_by_key
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
    assert len({partition for p in partitions_of_key.values() for partition in p}) > 1


def test_cli_produces_over_scram_and_tls(
    kafka: KafkaCluster,
    topic_name: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    prefix = topic_name("loadgen-cli") + "."
    topics = create_generated_topics(kafka, prefix)
    password = uuid.uuid4().hex
    kafka.add_scram_user("loadgen", password)
    monkeypatch.setenv(PASSWORD_ENV, password)

    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "loadgen",
            "--bootstrap-servers",
            kafka.sasl_ssl_bootstrap_servers,
            "--sasl-username",
            "loadgen",
            "--ssl-ca-location",
            str(kafka.ca_location),
            "--topic-prefix",
            prefix,
            "--count",
            "3000",
            "--rate",
            "0",
            "--seed",
            "4",
            "--users",
            "500",
        ]
    )
    assert args.handler(args) == 0
    err = capsys.readouterr().err
    assert "sent 3,000, delivered 3,000, failed 0" in err
    assert password not in err
    assert len(consume(kafka, topics, 3000)) == 3000


def test_delivery_failures_are_counted_not_hidden(
    kafka: KafkaCluster, topic_name: Callable[..., str]
) -> None:
    # The topic refuses batches over 128 bytes and every event is larger: every delivery
    # fails for good (no retry can help), and the report must say so.
    prefix = topic_name("loadgen-fail") + "."
    topics = create_generated_topics(kafka, prefix, **{"max.message.bytes": "128"})
    # Short message timeout: had the broker accepted-and-retried instead, this fails in
    # seconds rather than after the default minute.
    sink = KafkaSink(producer_config(kafka.bootstrap_servers, extra={"message.timeout.ms": "3000"}))
    sink.check_topics(topics)
    events = TrafficGenerator(TrafficConfig(seed=1, users=100)).events(200)
    report = send_events(events, sink, TopicRouter(prefix=prefix), flush_timeout=30)
    assert not report.ok
    assert report.failed == 200 and report.delivered == 0
    assert any("too large" in error.lower() for error, _ in report.errors), report.errors
