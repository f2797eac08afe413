"""The runtime stamps what it produces: outputs with the timestamp their handler gave
(the event time of what they derive from), dead letters with the original record's
timestamp, so a replay of either lands in the interval the event belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from starling.events import Platform, TweetCreated, encode, new_event
from starling.runtime.config import RuntimeSettings
from starling.runtime.consumer import ConsumerRuntime
from starling.runtime.handler import BaseHandler, Outbox, Record

pytestmark = pytest.mark.unit

T = "tweets"
EVENT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WRITTEN_MS = EVENT_MS + 189_000  # written late, as in a backlog


class OneBatchConsumer:
    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.stop: Any = None
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, _count: int, _timeout: float) -> list[Message]:
        if not self.messages:
            self.stop()
            return []
        batch, self.messages = self.messages, []
        return batch

    def commit(self, **_kwargs: Any) -> Any:
        return None

    def get_watermark_offsets(self, *_args: Any, **_kwargs: Any) -> tuple[int, int]:
        return (0, 0)

    def close(self) -> None:
        return None


class RecordingProducer:
    def __init__(self) -> None:
        self.produced: list[tuple[str, int | None]] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Any = None,
        timestamp: int | None = None,
    ) -> None:
        self.produced.append((topic, timestamp))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float = -1) -> int:
        return 0

    def __len__(self) -> int:
        return 0


class StampingHandler(BaseHandler):
    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {T: TweetCreated}

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        for record in records:
            stamp = int(record.event.event_time.timestamp() * 1000)
            outbox.emit("out", None, b"derived", stamp)


def test_outputs_carry_the_handlers_timestamp_and_dead_letters_the_original() -> None:
    from datetime import UTC, datetime

    tweet = new_event(
        TweetCreated,
        tweet_id=7,
        author_id=1,
        text="hi",
        platform=Platform.WEB,
        event_time=datetime.fromtimestamp(EVENT_MS / 1000, UTC),
    )
    written = (TIMESTAMP_CREATE_TIME, WRITTEN_MS)
    consumer = OneBatchConsumer(
        [
            Message(topic=T, partition=0, offset=0, value=encode(tweet), timestamp=written),
            Message(topic=T, partition=0, offset=1, value=b"{bad", timestamp=written),
        ]
    )
    producer = RecordingProducer()
    runtime = ConsumerRuntime(
        RuntimeSettings(starling_service="ingestion", kafka_bootstrap_servers="fake:9092"),
        StampingHandler(),
        serve_metrics=False,
        consumer_factory=lambda _config: consumer,
        producer_factory=lambda _config: producer,
    )
    consumer.stop = runtime.request_stop
    runtime.run()
    assert sorted(producer.produced) == [("out", EVENT_MS), (T + ".dlq", WRITTEN_MS)]
