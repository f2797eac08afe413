"""Pacing, topic routing, the file sink and the send loop, without a broker."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from starling.events import TweetCreated, UserInteraction, UserLogin, decode, encode
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.loadgen.pacing import TokenBucket
from starling.loadgen.sink import (
    DeliveryStats,
    FileSink,
    Record,
    SinkError,
    TopicRouter,
    encode_batches,
    producer_config,
    read_events_file,
    send_events,
)
from starling.topics import CATALOG, INTERACTIONS, LOGINS, TWEETS

pytestmark = pytest.mark.unit


class FakeClock:
    """Time that moves only when the code under test sleeps (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


class ListSink:
    def __init__(self) -> None:
        self.stats = DeliveryStats()
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False

    def send_batch(self, records: Sequence[Record]) -> None:
        self.sent.extend(records)
        self.stats.sent += len(records)
        self.stats.delivered += len(records)

    def poll(self) -> None:
        pass

    def flush(self, timeout: float) -> None:
        self.flushed = True

    def close(self) -> None:
        self.closed = True


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, capacity=10, clock=clock, sleep=clock.sleep)
    for _ in range(500):
        bucket.acquire(10)
    assert clock.now - 100.0 == pytest.approx(5.0, rel=1e-6)


def test_token_bucket_caps_catch_up_bursts() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=5, clock=clock, sleep=clock.sleep)
    clock.now += 60  # a long stall: at most `capacity` tokens were saved up
    for _ in range(5):
        assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.01)


def test_token_bucket_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, capacity=1)
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(rate=1, capacity=2).acquire(3)


def test_router_uses_the_catalog_with_prefix_and_overrides() -> None:
    router = TopicRouter()
    assert router.topic_for_type(TweetCreated) == CATALOG.topic_for(TweetCreated).name == TWEETS
    assert router.topic_for_type(UserInteraction) == INTERACTIONS
    assert router.topic_for_type(UserLogin) == LOGINS
    renamed = TopicRouter(prefix="t1-", overrides={TWEETS: "my-tweets"})
    assert renamed.topic_for_type(TweetCreated) == "t1-my-tweets"
    assert renamed.topic_for_type(UserLogin) == "t1-" + LOGINS
    with pytest.raises(ValueError, match="unknown catalog topics"):
        TopicRouter(overrides={"nope": "x"})


def test_send_events_paces_and_reports_progress() -> None:
    clock = FakeClock()
    sink = ListSink()
    progress = io.StringIO()
    events = TrafficGenerator(TrafficConfig(seed=1, users=100)).events(3000)
    report = send_events(
        events,
        sink,
        TopicRouter(),
        rate=1000,
        progress=progress,
        clock=clock,
        sleep=clock.sleep,
    )
    assert report.ok and report.sent == report.delivered == 3000
    assert report.elapsed_s == pytest.approx(3.0, abs=0.01)
    assert report.rate == pytest.approx(1000, rel=0.01)
    lines = progress.getvalue().splitlines()
    assert len(lines) == 2 and "target 1,000/s" in lines[0]
    assert sink.flushed and sink.closed
    for topic, key, payload, timestamp in sink.sent:
        event = decode(payload)
        assert topic == TopicRouter().topic_for(event)
        assert key == event.partition_key()
        # The Kafka sink stamps this as the record timestamp: the event's own time.
        assert timestamp == int(event.event_time.timestamp() * 1000)


def test_send_events_stops_after_the_duration() -> None:
    clock = FakeClock()
    sink = ListSink()
    events = TrafficGenerator(TrafficConfig(seed=1, users=100)).events()
    report = send_events(
        events, sink, TopicRouter(), rate=500, duration=2.0, clock=clock, sleep=clock.sleep
    )
    assert 990 <= report.sent <= 1010


def test_report_counts_failures_and_undelivered() -> None:
    class Lossy(ListSink):
        def send_batch(self, records: Sequence[Record]) -> None:
            for _ in records:
                self.stats.sent += 1
                if self.stats.sent % 10 == 0:
                    self.stats.failed += 1
                    self.stats.errors["Broker: Not enough in-sync replicas"] += 1
                elif self.stats.sent % 10 != 5:
                    self.stats.delivered += 1

    report = send_events(
        TrafficGenerator(TrafficConfig(users=10)).events(100), Lossy(), TopicRouter()
    )
    assert (report.sent, report.delivered, report.failed, report.undelivered) == (100, 80, 10, 10)
    assert not report.ok
    assert "10 x delivery error: Broker: Not enough in-sync replicas" in report.summary()


def test_file_sink_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    events = list(TrafficGenerator(TrafficConfig(seed=5, users=200)).events(2000))
    report = send_events(iter(events), FileSink(path), TopicRouter(prefix="x."))
    assert report.ok and report.delivered == 2000
    records = list(read_events_file(path))
    assert len(records) == 2000
    for (topic, key, payload), event in zip(records, events, strict=True):
        assert payload == encode(event)
        assert key == event.partition_key()
        assert topic == "x." + CATALOG.topic_for(type(event)).name


def test_file_sink_reports_unwritable_paths(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="cannot write"):
        FileSink(tmp_path / "missing-dir" / "out.jsonl")


def test_read_events_file_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"topic":"tweets","key":"1","event":{}}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        list(read_events_file(path))


def test_producer_config_is_idempotent_and_secure_when_asked() -> None:
    plain = producer_config("broker:9092")
    assert plain["enable.idempotence"] is True and plain["acks"] == "all"
    assert 5 <= plain["linger.ms"] <= 20
    secure = producer_config(
        "broker:9093",
        security_protocol="SASL_SSL",
        sasl_username="loadgen",
        sasl_password="secret",
        ssl_ca_location="/ca.pem",
    )
    assert secure["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (secure["sasl.username"], secure["ssl.ca.location"]) == ("loadgen", "/ca.pem")
    with pytest.raises(ValueError, match="needs a SASL username"):
        producer_config("b:1", security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="needs a SASL security protocol"):
        producer_config("b:1", sasl_username="x", sasl_password="y")


def test_encode_batches_keeps_order_and_batch_size() -> None:
    events = list(TrafficGenerator(TrafficConfig(seed=2, users=50)).events(2500))
    batches = list(encode_batches(iter(events), TopicRouter(), batch_size=1000))
    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    flat = [record for batch in batches for record in batch]
    assert [payload for _, _, payload, _ in flat] == [encode(event) for event in events]
