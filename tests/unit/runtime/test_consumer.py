"""The consumer loop's offset handling, against scripted stand-ins for the Kafka clients:
effects, then publication, then commit; asynchronous commits one at a time with failures
counted and retried; synchronous commits on revocation and at shutdown; nothing committed
for partitions revoked or lost, for error events, or for a batch that did not finish."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition

from starling.events import Platform, TweetCreated, encode, new_event
from starling.runtime.config import RuntimeSettings
from starling.runtime.consumer import (
    GC_OBJECTS_PER_MESSAGE,
    ConsumerRuntime,
    RuntimeFailedError,
    make_room_for_batches,
)
from starling.runtime.handler import BaseHandler, Outbox, Record, TransientError

pytestmark = pytest.mark.unit

T = "tweets"
Step = Callable[["FakeConsumer"], list[Message]]


class FakeConsumer:
    """Each consume() first serves the answers to asynchronous commits (as librdkafka
    does), then runs the next scripted step; when the script is done it stops the runtime."""

    def __init__(self, config: Mapping[str, Any], log: list[Any]) -> None:
        self.on_commit: Callable[[Any, list[Any]], None] = config["on_commit"]
        self.log = log
        self.steps: list[Step] = []
        self.answers: list[tuple[Any, list[TopicPartition]]] = []
        self.hold_answers = False
        self.fail_next_async: KafkaError | None = None
        self.stop: Callable[[], None] = lambda: None
        self.callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def assign(self, *partitions: int, topic: str = T) -> None:
        self.callbacks["on_assign"](self, [TopicPartition(topic, p) for p in partitions])

    def revoke(self, *partitions: int) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(T, p) for p in partitions])

    def lose(self, *partitions: int) -> None:
        self.callbacks["on_lost"](self, [TopicPartition(T, p) for p in partitions])

    def serve_answers(self) -> None:
        answers, self.answers = self.answers, []
        for error, partitions in answers:
            self.on_commit(error, partitions)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if not self.hold_answers:
            self.serve_answers()
        if not self.steps:
            self.stop()
            return []
        return self.steps.pop(0)(self)

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        self.log.append(("commit", "async" if asynchronous else "sync", committed))
        answer = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets]
        if asynchronous:
            error, self.fail_next_async = self.fail_next_async, None
            self.answers.append((error, answer))
            return None
        return answer

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 100

    def close(self) -> None:
        self.serve_answers()


class FakeProducer:
    def __init__(self, config: Mapping[str, Any], log: list[Any]) -> None:
        self.log = log
        self.produced: list[tuple[str, bytes | None, bytes, Any]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any = None) -> None:
        self.produced.append((topic, key, value, headers))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.log.append(("acknowledged", len(self.produced)))
        return 0

    def __len__(self) -> int:
        return 0


class RecordingHandler(BaseHandler):
    def __init__(self, log: list[Any], input_types: Mapping[str, type[Any]] | None = None) -> None:
        self.log = log
        self._input_types = input_types or {T: bytes}
        self.batches: list[list[Record]] = []
        self.revoked: list[tuple[str, int]] = []
        self.fail_batches: set[int] = set()

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return self._input_types

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        if len(self.batches) in self.fail_batches:
            raise TransientError("store down")
        self.batches.append(list(records))
        self.log.append(("handled", [(r.message.partition(), r.message.offset()) for r in records]))
        outbox.emit("out", None, b"derived")

    def partitions_revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.revoked.extend(partitions)


class Harness:
    def __init__(self, handler_types: Mapping[str, type[Any]] | None = None, **settings: Any):
        self.log: list[Any] = []
        self.handler = RecordingHandler(self.log, handler_types)
        created: dict[str, Any] = {}

        def consumer(config: dict[str, Any]) -> FakeConsumer:
            created["consumer"] = FakeConsumer(config, self.log)
            return created["consumer"]

        def producer(config: dict[str, Any]) -> FakeProducer:
            created["producer"] = FakeProducer(config, self.log)
            return created["producer"]

        self.runtime = ConsumerRuntime(
            RuntimeSettings(
                starling_service="ingestion",
                kafka_bootstrap_servers="fake:9092",
                metrics_port=0,
                **settings,
            ),
            self.handler,
            serve_metrics=False,
            consumer_factory=consumer,
            producer_factory=producer,
        )
        self.consumer: FakeConsumer = created["consumer"]
        self.producer: FakeProducer = created["producer"]
        self.consumer.stop = self.runtime.request_stop

    def script(self, *steps: Step) -> Harness:
        self.consumer.steps.extend(steps)
        return self

    def run(self) -> None:
        self.runtime.run()

    def commits(self) -> list[tuple[str, dict[tuple[str, int], int]]]:
        return [(kind, offsets) for event, kind, offsets in self._events("commit")]

    def _events(self, name: str) -> list[Any]:
        return [entry for entry in self.log if entry[0] == name]

    def metric(self, name: str, **labels: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value(
            name, {"service": "ingestion", **labels}
        )
        return value or 0.0


def batch(*messages: tuple[int, int], topic: str = T) -> list[Message]:
    return [Message(topic=topic, partition=p, offset=o, value=b"payload") for p, o in messages]


def step(*messages: tuple[int, int], before: Callable[[FakeConsumer], None] | None = None) -> Step:
    def run(consumer: FakeConsumer) -> list[Message]:
        if before is not None:
            before(consumer)
        return batch(*messages)

    return run


@pytest.fixture(autouse=True)
def _restore_gc_threshold() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


def test_commit_follows_effects_and_acknowledgements_with_each_partitions_next_offset() -> None:
    harness = Harness().script(
        step((1, 5), (1, 6), (0, 10), (2, 3), (0, 11), (1, 7), before=lambda c: c.assign(0, 1, 2))
    )
    harness.run()
    assert harness.log[:3] == [
        ("handled", [(1, 5), (1, 6), (0, 10), (2, 3), (0, 11), (1, 7)]),
        ("acknowledged", 1),
        ("commit", "async", {(T, 0): 12, (T, 1): 8, (T, 2): 4}),
    ]
    assert harness.metric("starling_messages_processed_total", topic=T) == 6
    assert harness.metric("starling_commit_failures_total") == 0


def test_one_commit_in_flight_and_later_offsets_go_with_the_next() -> None:
    def release(consumer: FakeConsumer) -> list[Message]:
        consumer.hold_answers = False
        consumer.serve_answers()
        return []

    harness = Harness()
    harness.consumer.hold_answers = True
    harness.script(
        step((0, 0), (0, 1), before=lambda c: c.assign(0)),
        step((0, 2), (0, 3)),  # the first commit is unanswered: nothing sent
        release,  # answered: the loop sends what finished meanwhile
    )
    harness.run()
    assert harness.commits() == [("async", {(T, 0): 2}), ("async", {(T, 0): 4})]


def test_a_failed_asynchronous_commit_is_counted_and_carried_by_the_next() -> None:
    def fail_first(consumer: FakeConsumer) -> None:
        consumer.assign(0)
        consumer.fail_next_async = KafkaError(KafkaError.REQUEST_TIMED_OUT)

    harness = Harness().script(step((0, 0), (0, 1), before=fail_first), lambda c: [])
    harness.run()
    assert harness.commits() == [("async", {(T, 0): 2}), ("async", {(T, 0): 2})]
    assert harness.metric("starling_commit_failures_total") == 1
    assert harness.runtime._ledger.committed == {(T, 0): 2}


def test_revocation_commits_finished_work_and_nothing_after_it() -> None:
    harness = Harness()
    harness.consumer.hold_answers = True  # partition 1's offsets are still unconfirmed
    harness.script(
        step((0, 0), (1, 0), (0, 1), (1, 1), before=lambda c: c.assign(0, 1)),
        # Revoked inside consume, and the batch it returns still holds partition 1's
        # messages: they are handled (effects are idempotent), never committed.
        step((0, 2), (1, 2), (1, 3), before=lambda c: c.revoke(1)),
    )
    harness.run()
    commits = harness.commits()
    assert commits[0] == ("async", {(T, 0): 2, (T, 1): 2})
    assert commits[1] == ("sync", {(T, 1): 2})  # on revoke: the finished work, waited for
    assert all((T, 1) not in offsets for _kind, offsets in commits[2:])
    assert {(T, 0): 3} in [offsets for _kind, offsets in commits[2:]]
    assert harness.handler.revoked == [(T, 1)]
    assert len(harness.handler.batches) == 2


def test_a_lost_partition_is_not_committed_even_at_shutdown() -> None:
    harness = Harness()
    harness.consumer.hold_answers = True
    harness.script(
        step((0, 0), (0, 1), (1, 0), before=lambda c: c.assign(0, 1)),
        step(before=lambda c: c.lose(1)),
    )
    harness.run()
    # Shutdown commits partition 0's unconfirmed offset, not the lost partition's.
    assert harness.commits() == [("async", {(T, 0): 2, (T, 1): 1}), ("sync", {(T, 0): 2})]


def test_a_batch_that_did_not_finish_is_never_committed_and_nothing_after_a_failure() -> None:
    harness = Harness(starling_retry_budget_s=0.2)
    harness.consumer.hold_answers = True
    harness.handler.fail_batches = {1}
    harness.script(step((0, 0), (0, 1), before=lambda c: c.assign(0)), step((0, 2), (0, 3)))
    with pytest.raises(RuntimeFailedError):
        harness.run()
    # Only the first batch's commit, sent before the failure; no commit at shutdown (its
    # answer is unconfirmed, so that batch may be redelivered: safe), none for the second.
    assert harness.commits() == [("async", {(T, 0): 2})]
    assert harness.metric("starling_batch_retries_total") >= 1


def test_a_clean_stop_commits_unconfirmed_finished_work_synchronously() -> None:
    harness = Harness()
    harness.consumer.hold_answers = True
    harness.script(step((0, 0), (0, 1), before=lambda c: c.assign(0)), step((0, 2)))
    harness.run()
    assert harness.commits() == [("async", {(T, 0): 2}), ("sync", {(T, 0): 3})]


def test_error_events_are_neither_handled_nor_committed() -> None:
    eof = Message(topic=T, partition=1, offset=50, error=KafkaError(KafkaError._PARTITION_EOF))

    def with_error(consumer: FakeConsumer) -> list[Message]:
        consumer.assign(0, 1)
        first, second = batch((0, 0), (0, 1))
        return [first, eof, second]

    harness = Harness().script(with_error)
    harness.run()
    assert [len(records) for records in harness.handler.batches] == [2]
    assert harness.commits() == [("async", {(T, 0): 2})]
    assert harness.metric("starling_messages_consumed_total", topic=T) == 2


def test_a_bad_payload_is_dead_lettered_and_the_rest_decoded_and_committed() -> None:
    tweet = new_event(TweetCreated, tweet_id=7, author_id=1, text="hi", platform=Platform.WEB)

    def mixed(consumer: FakeConsumer) -> list[Message]:
        consumer.assign(0)
        return [
            Message(topic=T, partition=0, offset=0, value=encode(tweet)),
            Message(topic=T, partition=0, offset=1, value=b"{not json"),
            Message(topic=T, partition=0, offset=2, value=None),
            Message(topic=T, partition=0, offset=3, value=encode(tweet)),
        ]

    harness = Harness({T: TweetCreated}).script(mixed)
    harness.run()
    (records,) = harness.handler.batches
    assert [r.message.offset() for r in records] == [0, 3]
    assert all(r.event == tweet for r in records)
    dead = [p for p in harness.producer.produced if p[0] == T + ".dlq"]
    assert len(dead) == 2
    assert harness.commits() == [("async", {(T, 0): 4})]


def test_a_clean_batch_is_decoded_in_one_go() -> None:
    tweets = [
        new_event(TweetCreated, tweet_id=i, author_id=1, text="hi", platform=Platform.WEB)
        for i in range(1, 4)
    ]

    def clean(consumer: FakeConsumer) -> list[Message]:
        consumer.assign(0)
        return [
            Message(topic=T, partition=0, offset=i, value=encode(t)) for i, t in enumerate(tweets)
        ]

    harness = Harness({T: TweetCreated}).script(clean)
    harness.run()
    assert [r.event for r in harness.handler.batches[0]] == tweets
    assert harness.producer.produced == [("out", None, b"derived", None)]


def test_several_topics_are_counted_and_committed_apart() -> None:
    def both(consumer: FakeConsumer) -> list[Message]:
        consumer.assign(0, topic="a")
        consumer.assign(0, 1, topic="b")
        return [*batch((0, 3), topic="a"), *batch((1, 8), (0, 2), topic="b")]

    harness = Harness({"a": bytes, "b": bytes}).script(both)
    harness.run()
    assert harness.commits() == [("async", {("a", 0): 4, ("b", 1): 9, ("b", 0): 3})]
    assert harness.metric("starling_messages_consumed_total", topic="a") == 1
    assert harness.metric("starling_messages_consumed_total", topic="b") == 2


def test_lag_is_measured_from_confirmed_commits() -> None:
    harness = Harness().script(step((0, 0), (0, 1), before=lambda c: c.assign(0)), lambda c: [])
    harness.run()
    harness.runtime._ledger.assign([(T, 0)])  # released at shutdown; lag is read per owner
    harness.runtime._ledger.committed[(T, 0)] = 2
    harness.runtime._update_lag()
    assert harness.metric("starling_consumer_lag", topic=T, partition="0") == 98


def test_kafka_errors_are_true() -> None:
    # The hot path finds error events with `any(map(Message.error, batch))`.
    assert all(map(bool, [KafkaError(KafkaError._PARTITION_EOF), KafkaError(0)]))


def test_the_collector_threshold_is_raised_above_a_batch_never_lowered() -> None:
    gc.set_threshold(700, 10, 10)
    make_room_for_batches(5000)
    assert gc.get_threshold() == (GC_OBJECTS_PER_MESSAGE * 5000, 10, 10)
    make_room_for_batches(10)
    assert gc.get_threshold() == (GC_OBJECTS_PER_MESSAGE * 5000, 10, 10)
    gc.set_threshold(0, 10, 10)  # collection disabled by the process: left alone
    make_room_for_batches(5000)
    assert gc.get_threshold() == (0, 10, 10)
