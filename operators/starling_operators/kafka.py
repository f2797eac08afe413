"""Kafka client helpers with bounded time: every call fails within its timeout, naming the
broker and the cause, instead of inheriting librdkafka's minutes-long defaults.

Nothing here imports Airflow: the helpers take a plain librdkafka config dict (built from
the Airflow connection by `starling_operators.connection`), so they are unit-testable and
cheap to import from a DAG task.

Why each default is there:

* librdkafka retries an unreachable bootstrap server forever and a `produce` waits up to
  `message.timeout.ms` (5 min by default) before reporting a failure; `flush()` without a
  timeout then blocks the task (and ignores SIGTERM while it does).
* A consumer never raises on an unreachable cluster: `poll()` just returns nothing, so a
  task that "read the interval" would happily report an empty interval. Every read starts
  with a metadata request that has a deadline, and the error callback's last message is
  kept so the exception can say *why* (connection refused, authentication failed, ...).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

# Client-level bounds shared by producers, consumers and admin clients.
BOUNDED_CLIENT_DEFAULTS: dict[str, Any] = {
    # A TCP connect + TLS/SASL handshake that takes longer than this is a failure.
    "socket.connection.setup.timeout.ms": 5_000,
    "socket.timeout.ms": 10_000,
    # Keep reconnect attempts frequent so a broker that comes back is used quickly.
    "reconnect.backoff.ms": 250,
    "reconnect.backoff.max.ms": 2_000,
}

# An idempotent, fully acknowledged producer (librdkafka does not enable idempotence by
# default). `message.timeout.ms` bounds how long one message may stay undelivered.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "message.timeout.ms": 15_000,
    "request.timeout.ms": 10_000,
    "linger.ms": 5,
    # A typo in a topic name must fail the task, not create a one-partition topic.
    "allow.auto.create.topics": False,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    # Offsets are committed explicitly, and only after the task's effect is durable.
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10_000,
}

# Consumer-only keys a shared connection extra may carry (the login watcher's group);
# producers and admin clients would log a warning for each.
_CONSUMER_ONLY_KEYS = frozenset(
    {
        "group.id",
        "group.instance.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "isolation.level",
        "enable.partition.eof",
        "partition.assignment.strategy",
        "auto.commit.interval.ms",
    }
)
_PRODUCER_ONLY_KEYS = frozenset(
    {
        "enable.idempotence",
        "acks",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "request.timeout.ms",
        "linger.ms",
        "compression.type",
        "batch.size",
        "retries",
        "partitioner",
        "allow.auto.create.topics",
    }
)

DEFAULT_TIMEOUT_S = 20.0
T = TypeVar("T")


class KafkaUnavailableError(RuntimeError):
    """The cluster could not be reached (or refused us) within the deadline."""


class DeliveryFailedError(RuntimeError):
    """At least one produced message was not acknowledged by the brokers."""


class KafkaReadError(RuntimeError):
    """An interval could not be read completely (missing topic, deadline, client error)."""


def bootstrap_of(config: Mapping[str, Any]) -> str:
    return str(config.get("bootstrap.servers", "<no bootstrap.servers>"))


def producer_config(base: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Bounded producer settings; the connection's own values win over our defaults."""
    config = {**BOUNDED_CLIENT_DEFAULTS, **PRODUCER_DEFAULTS}
    config.update({k: v for k, v in base.items() if k not in _CONSUMER_ONLY_KEYS})
    config.update(overrides)
    return config


def consumer_config(base: Mapping[str, Any], group_id: str, **overrides: Any) -> dict[str, Any]:
    config = {**BOUNDED_CLIENT_DEFAULTS, **CONSUMER_DEFAULTS}
    config.update({k: v for k, v in base.items() if k not in _PRODUCER_ONLY_KEYS})
    config["group.id"] = group_id
    config.update(overrides)
    return config


def admin_config(base: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    config = dict(BOUNDED_CLIENT_DEFAULTS)
    config.update(
        {
            k: v
            for k, v in base.items()
            if k not in _CONSUMER_ONLY_KEYS and k not in _PRODUCER_ONLY_KEYS
        }
    )
    config.update(overrides)
    return config


class _ErrorRecorder:
    """librdkafka reports connection problems only through the error callback; keep the
    distinct messages so a timeout can be explained ("Connection refused", "SASL
    authentication failed", ...). Called from librdkafka's threads, hence the lock."""

    _KEEP = 3

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self.fatal = False

    def __call__(self, error: KafkaError) -> None:
        with self._lock:
            text = error.str()
            if text not in self._messages and len(self._messages) < self._KEEP:
                self._messages.append(text)
            if error.fatal() or error.code() in (
                KafkaError._AUTHENTICATION,
                KafkaError.SASL_AUTHENTICATION_FAILED,
            ):
                self.fatal = True

    @property
    def last(self) -> str | None:
        with self._lock:
            return self._messages[-1] if self._messages else None

    def cause(self, fallback: str) -> str:
        with self._lock:
            return "; ".join(self._messages) if self._messages else fallback


def _with_recorder(config: Mapping[str, Any]) -> tuple[dict[str, Any], _ErrorRecorder]:
    recorder = _ErrorRecorder()
    config = dict(config)
    # A user-supplied error_cb (allow-listed in the connection) still wins.
    config.setdefault("error_cb", recorder)
    return config, recorder


def _unavailable(config: Mapping[str, Any], timeout: float, cause: str) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"Kafka broker(s) {bootstrap_of(config)} not reachable within {timeout:g} s: {cause}"
    )


def _metadata(
    client: Any,
    config: Mapping[str, Any],
    recorder: _ErrorRecorder,
    timeout: float,
    topic: str | None = None,
) -> Any:
    try:
        return client.list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        # Error callbacks are only served by poll(): serve the queued ones so the message
        # can give librdkafka's own reason ("Connection refused", "SASL ... failed").
        # Nothing is assigned yet, so a consumer's poll returns no record here.
        client.poll(0.2)
        # The traceback keeps this frame (and its callers) alive: do not let it keep the
        # client and its reconnecting threads alive too. No local names the new error,
        # which would make a frame <-> traceback cycle only the GC can break.
        del client
        raise _unavailable(config, timeout, recorder.cause(str(exc))) from exc


def check_reachable(config: Mapping[str, Any], timeout: float = 10.0) -> None:
    """Fail fast, naming the broker and the cause, when the cluster cannot be reached."""
    broker_count(config, timeout)


def broker_count(config: Mapping[str, Any], timeout: float = 10.0) -> int:
    """How many brokers the cluster has (raises KafkaUnavailableError if unreachable)."""
    config, recorder = _with_recorder(admin_config(config))
    return _with_admin(
        config, lambda admin: len(_metadata(admin, config, recorder, timeout).brokers)
    )


def _with_admin(config: Mapping[str, Any], work: Callable[[AdminClient], T]) -> T:
    """Run `work` with a fresh AdminClient that is gone when this returns or raises.

    AdminClient has no close(): it stops when its last reference goes. A failure's
    traceback would keep the frames that hold it (and its reconnecting threads) alive for
    as long as the exception is kept, so the traceback below this call is dropped; the
    message carries the broker and the cause.
    """
    admin = AdminClient(dict(config))
    try:
        return work(admin)
    except Exception as exc:
        failure = exc
    del admin
    _drop_tracebacks(failure)
    raise failure


def _drop_tracebacks(error: BaseException) -> None:
    """Forget the frames of an exception and of its causes (see `_with_admin`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


# ---- producing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    key: bytes | None
    value: bytes
    # CreateTime of the record: the event time, so interval reads by timestamp find it.
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ProduceReport:
    topic: str
    delivered: int
    seconds: float


def produce_all(
    config: Mapping[str, Any],
    topic: str,
    messages: Iterable[OutgoingMessage],
    timeout: float = DEFAULT_TIMEOUT_S,
) -> ProduceReport:
    """Produce every message and wait for its acknowledgement; raise DeliveryFailedError
    unless all were delivered before the deadline. Checks reachability first, so an
    unreachable cluster fails in seconds instead of at `message.timeout.ms`."""
    started = time.monotonic()
    config, recorder = _with_recorder(producer_config(config))
    producer = Producer(config)
    try:
        delivered = _produce_and_wait(producer, config, recorder, topic, messages, timeout)
    finally:
        # Whatever was not delivered is dropped now, not retried by a producer that
        # outlives the failed task (a traceback keeps this frame alive); then close it so
        # its threads stop reconnecting.
        producer.purge()
        producer.poll(0)
        producer.close()
    return ProduceReport(topic, delivered, time.monotonic() - started)


def _produce_and_wait(
    producer: Producer,
    config: Mapping[str, Any],
    recorder: _ErrorRecorder,
    topic: str,
    messages: Iterable[OutgoingMessage],
    timeout: float,
) -> int:
    deadline = time.monotonic() + timeout
    metadata = _metadata(producer, config, recorder, min(timeout, 10.0), topic)
    topic_metadata = metadata.topics.get(topic)
    if topic_metadata is None or topic_metadata.error is not None:
        cause = topic_metadata.error.str() if topic_metadata is not None else "missing"
        raise DeliveryFailedError(f"topic {topic} on {bootstrap_of(config)}: {cause}")

    failures: list[str] = []
    delivered = 0
    sent = 0

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1
        else:
            failures.append(error.str())

    for message in messages:
        while True:
            try:
                producer.produce(
                    topic,
                    value=message.value,
                    key=message.key,
                    timestamp=message.timestamp_ms or 0,
                    headers=list(message.headers) or None,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports to make room, within the deadline.
                if time.monotonic() > deadline:
                    raise DeliveryFailedError(
                        f"producer queue to {bootstrap_of(config)} stayed full for {timeout:g} s;"
                        f" {delivered}/{sent} message(s) to {topic} delivered"
                    ) from None
                producer.poll(0.1)
        sent += 1
        producer.poll(0)

    # flush() in short slices: a long flush ignores signals (the task could not be killed).
    remaining = len(producer)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
    if remaining or failures or delivered != sent:
        cause = failures[0] if failures else recorder.cause("deadline reached")
        raise DeliveryFailedError(
            f"{sent - delivered} of {sent} message(s) to topic {topic} on {bootstrap_of(config)}"
            f" not delivered within {timeout:g} s: {cause}"
        )
    return delivered


# ---- reading an interval ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class IntervalRead:
    """The records of `[start, end)` by record timestamp, and the per-partition end offsets
    (what a consumer group has processed once the effect is durable)."""

    topic: str
    records: list[KafkaRecord]
    end_offsets: dict[int, int]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# Errors a leader election or a just-created topic produce: worth retrying until the
# deadline, unlike an unreachable cluster (that fails the metadata check first).
_TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def _retrying(call: Callable[[], T], deadline: float, what: str) -> T:
    """`call()`, retrying transient leadership errors until the deadline."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            transient = isinstance(error, KafkaError) and error.code() in _TRANSIENT_CODES
            if not transient or time.monotonic() > deadline:
                raise KafkaReadError(f"{what} failed: {exc}") from exc
            time.sleep(0.2)


def _watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """(low, high) watermark of one partition."""
    low, high = _retrying(
        lambda: consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=max(1.0, deadline - time.monotonic())
        ),
        deadline,
        f"watermarks of {topic}[{partition}]",
    )
    return int(low), int(high)


def read_interval(
    config: Mapping[str, Any],
    topic: str,
    start: datetime,
    end: datetime,
    group_id: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> IntervalRead:
    """Read exactly the records whose timestamp is in [start, end).

    Record timestamps are event times, so a partition is not in timestamp order: a
    backlog or a replay writes old event times after newer ones. Each partition is read
    from the first offset whose timestamp is at or after `start` (`offsets_for_times`:
    nothing earlier can be in range) up to its end offset at the time of the read, and
    filtered by timestamp; stopping at the first record at or after `end` would miss
    every record of the interval written after it. A re-run of the same interval reads
    the same records plus any that arrived late since (as long as retention keeps
    them). Records are assigned, not subscribed: no group rebalance, nothing committed.
    """
    if end <= start:
        raise ValueError(f"interval end {end} must be after start {start}")
    deadline = time.monotonic() + timeout
    # If the range disappears under us (retention), fail instead of silently reading
    # from somewhere else.
    config, recorder = _with_recorder(
        consumer_config(config, group_id, **{"auto.offset.reset": "error"})
    )
    consumer = Consumer(config)
    try:
        metadata = _metadata(consumer, config, recorder, min(timeout, 10.0), topic)
        topic_metadata = metadata.topics.get(topic)
        if topic_metadata is None or topic_metadata.error is not None:
            cause = topic_metadata.error.str() if topic_metadata is not None else "missing"
            raise KafkaReadError(f"topic {topic} on {bootstrap_of(config)}: {cause}")
        partitions = sorted(topic_metadata.partitions)
        start_ms, end_ms = _millis(start), _millis(end)

        def lookup(moment_ms: int) -> list[TopicPartition]:
            found: list[TopicPartition] = _retrying(
                lambda: consumer.offsets_for_times(
                    [TopicPartition(topic, p, moment_ms) for p in partitions],
                    timeout=max(1.0, deadline - time.monotonic()),
                ),
                deadline,
                f"offsets_for_times on {topic} ({bootstrap_of(config)})",
            )
            return found

        ranges: dict[int, tuple[int, int]] = {}
        for begin_tp in lookup(start_ms):
            _low, high = _watermarks(consumer, topic, begin_tp.partition, deadline)
            # -1: no record at or after that time, i.e. nothing of the interval is there.
            first = begin_tp.offset if begin_tp.offset >= 0 else high
            ranges[begin_tp.partition] = (first, high)

        records = _consume_ranges(consumer, config, recorder, topic, ranges, deadline, timeout)
        # Later event times are read too (see above): keep only what is truly in range.
        records = [r for r in records if start_ms <= r.timestamp_ms < end_ms]
        return IntervalRead(topic, records, {p: stop for p, (_first, stop) in ranges.items()})
    finally:
        consumer.close()


def _consume_ranges(
    consumer: Consumer,
    config: Mapping[str, Any],
    recorder: _ErrorRecorder,
    topic: str,
    ranges: Mapping[int, tuple[int, int]],
    deadline: float,
    timeout: float,
) -> list[KafkaRecord]:
    pending = {p: stop for p, (first, stop) in ranges.items() if first < stop}
    if not pending:
        return []
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
    records: list[KafkaRecord] = []
    while pending:
        if time.monotonic() > deadline:
            raise KafkaReadError(
                f"reading {topic} from {bootstrap_of(config)} did not finish within {timeout:g} s"
                f" ({len(records)} records read, partitions left: {sorted(pending)});"
                f" last client error: {recorder.cause('none')}"
            )
        if recorder.fatal:
            raise _unavailable(config, timeout, recorder.cause("fatal client error"))
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaReadError(f"reading {topic} from {bootstrap_of(config)}: {error.str()}")
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            stop = pending.get(partition)
            if stop is None or not ranges[partition][0] <= offset < stop:
                continue
            _kind, timestamp = message.timestamp()
            records.append(
                KafkaRecord(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    timestamp_ms=timestamp,
                    key=message.key(),
                    value=message.value(),
                    headers=_headers(message.headers()),
                )
            )
            if offset + 1 >= stop:
                del pending[partition]
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple(
        (name, value.encode() if isinstance(value, str) else (value or b""))
        for name, value in pairs
    )


def commit_progress(
    config: Mapping[str, Any],
    group_id: str,
    topic: str,
    end_offsets: Mapping[int, int],
    timeout: float = 10.0,
) -> dict[int, int]:
    """Record in `group_id` that the interval up to `end_offsets` is processed, so lag
    monitoring sees Airflow's progress. Never moves a committed offset backwards (re-running
    an old interval must not make the group look behind). Returns what was committed."""
    config, recorder = _with_recorder(consumer_config(config, group_id))
    consumer = Consumer(config)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(end_offsets)]
        try:
            committed = consumer.committed(partitions, timeout=timeout)
        except KafkaException as exc:
            raise _unavailable(config, timeout, recorder.cause(str(exc))) from exc
        advance = [
            TopicPartition(topic, tp.partition, end_offsets[tp.partition])
            for tp in committed
            if end_offsets[tp.partition] > max(tp.offset, 0)
        ]
        if advance:
            consumer.commit(offsets=advance, asynchronous=False)
        return {tp.partition: tp.offset for tp in advance}
    finally:
        consumer.close()


# ---- lag and topics --------------------------------------------------------------------------


def consumer_lag(
    config: Mapping[str, Any], group_id: str, topics: Sequence[str], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """Per-partition lag of `group_id`: high watermark minus committed offset; a partition
    the group never committed counts in full (high minus low watermark)."""
    deadline = time.monotonic() + timeout
    config, recorder = _with_recorder(consumer_config(config, group_id))
    consumer = Consumer(config)
    try:
        metadata = _metadata(consumer, config, recorder, timeout)
        partitions: list[TopicPartition] = []
        for topic in topics:
            topic_metadata = metadata.topics.get(topic)
            if topic_metadata is None or topic_metadata.error is not None:
                raise KafkaReadError(f"topic {topic} does not exist on {bootstrap_of(config)}")
            partitions += [TopicPartition(topic, p) for p in sorted(topic_metadata.partitions)]
        try:
            committed = consumer.committed(
                partitions, timeout=max(1.0, deadline - time.monotonic())
            )
        except KafkaException as exc:
            raise _unavailable(config, timeout, recorder.cause(str(exc))) from exc
        lag: dict[tuple[str, int], int] = {}
        for tp in committed:
            low, high = _watermarks(consumer, str(tp.topic), int(tp.partition), deadline)
            position = tp.offset if tp.offset >= 0 else low
            lag[(tp.topic, tp.partition)] = max(0, high - position)
        return lag
    finally:
        consumer.close()


@dataclass(frozen=True)
class TopicRequest:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


def ensure_topics(
    config: Mapping[str, Any], topics: Sequence[TopicRequest], timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[list[str], list[str]]:
    """Create the topics that do not exist yet; returns (created, already existing).
    An existing topic is left alone (its partitions or configs are not reconciled: that is
    the Strimzi topic operator's job in a cluster)."""
    config, recorder = _with_recorder(admin_config(config))
    return _with_admin(
        config, lambda admin: _create_topics(admin, config, recorder, topics, timeout)
    )


def _create_topics(
    admin: AdminClient,
    config: Mapping[str, Any],
    recorder: _ErrorRecorder,
    topics: Sequence[TopicRequest],
    timeout: float,
) -> tuple[list[str], list[str]]:
    _metadata(admin, config, recorder, min(timeout, 10.0))
    futures = admin.create_topics(
        [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor,
                config=dict(t.config),
            )
            for t in topics
        ],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    created: list[str] = []
    existing: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
            else:
                raise KafkaUnavailableError(
                    f"creating topic {name} on {bootstrap_of(config)} failed: {exc}"
                ) from exc
    return sorted(created), sorted(existing)
