"""Where generated traffic goes: a Kafka cluster (idempotent producer) or a file.

`send_batches` drives batches of encoded records into a sink at a target rate, prints a
progress line every second and returns a `RunReport`; `send_events` does the same for
events, encoding them on the way. The catalog decides each event's topic; a
`TopicRouter` can prefix or rename topics so tests can use unique names.

File format (`FileSink`, read back with `read_events_file`): JSON lines, one event per
line, `{"topic": "<topic>", "key": "<partition key>", "event": <the encoded event>}`.
The event is embedded byte for byte as `starling.events.encode` produced it.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from starling.events import (
    EVENT_TYPES,
    Event,
    TweetCreated,
    UserInteraction,
    UserLogin,
    encode,
)
from starling.loadgen.pacing import TokenBucket
from starling.topics import CATALOG, TopicCatalog

# Event types the generator emits; only their topics need to exist.
GENERATED_EVENT_TYPES: tuple[type, ...] = (TweetCreated, UserInteraction, UserLogin)


class SinkError(RuntimeError):
    """The sink cannot work at all (unreachable cluster, missing topic, unwritable file)."""


class TopicRouter:
    """Maps each event type to its topic name: the catalog's name, optionally renamed
    (`overrides`, keyed by catalog name) and then prefixed."""

    def __init__(
        self,
        prefix: str = "",
        overrides: Mapping[str, str] | None = None,
        catalog: TopicCatalog = CATALOG,
    ) -> None:
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - catalog.names())
        if unknown:
            raise ValueError(f"topic overrides name unknown catalog topics: {unknown}")
        self._by_type: dict[type, str] = {}
        for event_type in EVENT_TYPES:
            name = catalog.topic_for(event_type).name
            self._by_type[event_type] = prefix + overrides.get(name, name)

    def topic_for(self, event: Event) -> str:
        return self._by_type[type(event)]

    def topic_for_type(self, event_type: type) -> str:
        return self._by_type[event_type]

    @property
    def by_type(self) -> Mapping[type, str]:
        return self._by_type


@dataclass
class DeliveryStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    # Distinct delivery errors and how often each occurred (for the final report).
    errors: Counter[str] = field(default_factory=Counter)


# (topic, key, payload, event time in ms): an encoded event ready for a sink; the Kafka
# sink stamps the record timestamp with the event time (the interval DAGs select by it).
Record = tuple[str, bytes, bytes, int]


def encode_batches(
    events: Iterable[Event], router: TopicRouter, batch_size: int = 1000
) -> Iterator[list[Record]]:
    """Events as lists of `batch_size` records (the last may be shorter)."""
    topic_of = router.by_type
    batch: list[Record] = []
    append = batch.append
    for event in events:
        append(
            (
                topic_of[type(event)],
                event.partition_key(),
                encode(event),
                int(event.event_time.timestamp() * 1000),
            )
        )
        if len(batch) >= batch_size:
            yield batch
            batch = []
            append = batch.append
    if batch:
        yield batch


class Sink(Protocol):
    stats: DeliveryStats

    def send_batch(self, records: Sequence[Record]) -> None: ...

    def poll(self) -> None:
        """Serve delivery reports; called every few milliseconds by the driver."""

    def flush(self, timeout: float) -> None:
        """Wait until everything sent is delivered or failed, or `timeout` passes."""

    def close(self) -> None: ...


# ---- Kafka ---------------------------------------------------------------------------------


def producer_config(
    bootstrap_servers: str,
    *,
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str = "SCRAM-SHA-512",
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_ca_location: str | None = None,
    compression: str = "lz4",
    linger_ms: int = 10,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """librdkafka settings for the load generator's producer."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": "starling-loadgen",
        # Idempotence: retries never duplicate or reorder a partition's messages, and it
        # implies acks=all and at most 5 requests in flight per connection.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "compression.type": compression,
        # Keys land on the same partitions as with the Java clients (Kafka Streams,
        # Connect, the console producer), which hash keys with murmur2.
        "partitioner": "murmur2_random",
        # Room for a few seconds of traffic at full speed, so the generator rarely waits.
        "queue.buffering.max.messages": 500_000,
        "batch.size": 1_000_000,
        # A delivery that has not succeeded after a minute is reported as failed: the
        # library default (5 minutes) makes a dead cluster look like a hang.
        "message.timeout.ms": 60_000,
        "security.protocol": security_protocol,
        # Connection errors reach us through error_cb and the final report; librdkafka
        # would otherwise also print each retry to stderr, drowning the progress lines.
        "log_level": 2,
    }
    if security_protocol.upper().startswith("SASL"):
        if not sasl_username or sasl_password is None:
            raise ValueError(f"{security_protocol} needs a SASL username and password")
        config.update(
            {
                "sasl.mechanism": sasl_mechanism,
                "sasl.username": sasl_username,
                "sasl.password": sasl_password,
            }
        )
    elif sasl_username:
        raise ValueError(f"a SASL username needs a SASL security protocol, not {security_protocol}")
    if ssl_ca_location:
        config["ssl.ca.location"] = ssl_ca_location
    config.update(extra or {})
    return config


class KafkaSink:
    """Produces to Kafka with confluent-kafka.

    Only failed deliveries are reported back (`delivery.report.only.error`): a Python
    callback per message cost about as much as producing it. Delivered is then what was
    sent, minus what failed, minus what the client still holds (`len(producer)`).
    """

    def __init__(self, config: Mapping[str, Any], connect_timeout: float = 10.0) -> None:
        from confluent_kafka import Producer

        self.stats = DeliveryStats()
        self._client_errors: list[str] = []
        self._producer = Producer(
            {
                **config,
                "delivery.report.only.error": True,
                "on_delivery": self._on_failed_delivery,
                "error_cb": self._on_error,
            }
        )
        self._produce = self._producer.produce
        self._connect_timeout = connect_timeout

    def check_topics(self, topics: Iterable[str]) -> None:
        """Fail fast, naming the problem, if the cluster is unreachable or a topic is
        missing: otherwise every message would only fail after `message.timeout.ms`."""
        from confluent_kafka import KafkaException

        for topic in sorted(set(topics)):
            try:
                metadata = self._producer.list_topics(topic=topic, timeout=self._connect_timeout)
            except KafkaException as exc:
                self._producer.poll(0)  # serve error_cb: it has the underlying cause
                raise SinkError(
                    f"cannot reach Kafka within {self._connect_timeout:g} s:"
                    f" {_error_text(exc.args[0])}"
                    + (f" ({self._client_errors[-1]})" if self._client_errors else "")
                ) from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                why = found.error.str() if found is not None and found.error else "not found"
                raise SinkError(f"topic {topic!r} is not usable: {why}")

    def send_batch(self, records: Sequence[Record]) -> None:
        # As lean as a hand-written produce loop: this runs once per event.
        produce = self._produce
        for topic, key, payload, timestamp in records:
            try:
                produce(topic, payload, key, timestamp=timestamp)
            except BufferError:
                self._produce_when_there_is_room(topic, key, payload, timestamp)
        self.stats.sent += len(records)

    def _produce_when_there_is_room(
        self, topic: str, key: bytes, payload: bytes, timestamp: int
    ) -> None:
        while True:
            self.poll(0.05)  # the local queue is full: let the client make room
            try:
                self._produce(topic, payload, key, timestamp=timestamp)
                return
            except BufferError:
                continue

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)
        self._count_delivered()

    def flush(self, timeout: float) -> None:
        self._producer.flush(timeout)
        self._count_delivered()

    def close(self) -> None:
        # confluent-kafka has no close(); whatever is still queued is purged so that an
        # interrupted run does not block on exit; purged messages are reported failed.
        self._producer.purge()
        self._producer.flush(5)
        self._count_delivered()

    def _count_delivered(self) -> None:
        stats = self.stats
        stats.delivered = max(0, stats.sent - stats.failed - len(self._producer))

    @property
    def last_client_error(self) -> str | None:
        return self._client_errors[-1] if self._client_errors else None

    def _on_failed_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:  # only failures are reported; be safe if that changes
            self.stats.failed += 1
            self.stats.errors[error.str()] += 1

    def _on_error(self, error: Any) -> None:
        # Transport errors (a broker restarting) are retried by the client; keep the
        # last few to explain a failure if one follows.
        self._client_errors.append(error.str())
        del self._client_errors[:-10]


def _error_text(error: Any) -> str:
    text = getattr(error, "str", None)
    return str(text()) if callable(text) else str(error)


# ---- file ----------------------------------------------------------------------------------

_json = msgspec.json.Encoder()


class FileSink:
    """Writes JSON lines (see the module docstring); `path` "-" is standard output."""

    def __init__(self, path: str | Path) -> None:
        self.stats = DeliveryStats()
        self._owned = str(path) != "-"
        try:
            self._file: IO[bytes] = (
                open(path, "wb", buffering=1 << 20) if self._owned else sys.stdout.buffer  # noqa: SIM115
            )
        except OSError as exc:
            raise SinkError(f"cannot write {path}: {exc.strerror}") from exc
        self._prefixes: dict[str, bytes] = {}

    def send_batch(self, records: Sequence[Record]) -> None:
        lines = []
        for topic, key, payload, _timestamp in records:
            prefix = self._prefixes.get(topic)
            if prefix is None:
                prefix = self._prefixes[topic] = b'{"topic":' + _json.encode(topic)
            lines.append(
                prefix + b',"key":' + _json.encode(key.decode()) + b',"event":' + payload + b"}\n"
            )
        self._file.write(b"".join(lines))
        # A written line is as delivered as a file gets.
        self.stats.sent += len(records)
        self.stats.delivered += len(records)

    def poll(self) -> None:
        pass

    def flush(self, timeout: float) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        if self._owned:
            self._file.close()


class FileRecord(msgspec.Struct, frozen=True):
    topic: str
    key: str
    event: msgspec.Raw


_record_decoder = msgspec.json.Decoder(FileRecord)


def read_events_file(path: str | Path) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, payload) per line of a file written by `FileSink`."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = _record_decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{number}: not a loadgen record: {exc}") from exc
            yield record.topic, record.key.encode(), bytes(record.event)


# ---- the driver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunReport:
    sent: int
    delivered: int
    failed: int
    # Sent but neither delivered nor failed when the final flush gave up.
    undelivered: int
    elapsed_s: float
    interrupted: bool
    errors: tuple[tuple[str, int], ...]

    @property
    def rate(self) -> float:
        """Achieved rate: events delivered per second of the whole run."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.undelivered == 0

    def summary(self) -> str:
        lines = [
            f"loadgen: sent {self.sent:,}, delivered {self.delivered:,}, failed {self.failed:,},"
            f" undelivered {self.undelivered:,} in {self.elapsed_s:.2f} s"
            f" - achieved {self.rate:,.0f} events/s"
            + (" (interrupted)" if self.interrupted else "")
        ]
        lines.extend(
            f"loadgen: {count:,} x delivery error: {error}" for error, count in self.errors
        )
        return "\n".join(lines)


def send_events(
    events: Iterable[Event], sink: Sink, router: TopicRouter, **options: Any
) -> RunReport:
    """Encode `events` and send them with `send_batches` (same options)."""
    return send_batches(encode_batches(events, router), sink, **options)


def send_batches(
    batches: Iterable[Sequence[Record]],
    sink: Sink,
    *,
    rate: float = 0.0,
    duration: float | None = None,
    progress: IO[str] | None = None,
    progress_interval: float = 1.0,
    flush_timeout: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Send every record (stop after `duration` seconds if given) at `rate` records per
    second (0 = as fast as possible), then flush. Ctrl-C stops sending early; what was
    sent is still flushed and reported."""
    # Pace, poll and report once per chunk of records, not per record: about 200 times
    # a second when paced, every 1000 records when not.
    chunk = max(1, min(1000, int(rate / 200))) if rate > 0 else 1000
    bucket = (
        TokenBucket(rate, capacity=max(chunk, rate / 20), clock=clock, sleep=sleep)
        if rate > 0
        else None
    )
    stats = sink.stats
    started = clock()
    deadline = started + duration if duration is not None else None
    next_report = started + progress_interval
    last_report = (started, 0)
    interrupted = False
    try:
        for batch in batches:
            for start in range(0, len(batch), chunk):
                piece = batch[start : start + chunk]
                if bucket is not None:
                    bucket.acquire(len(piece))
                now = clock()
                if deadline is not None and now >= deadline:
                    break
                sink.send_batch(piece)
                sink.poll()
                if progress is not None and now >= next_report:
                    interval_rate = (stats.sent - last_report[1]) / (now - last_report[0])
                    progress.write(_progress_line(stats, interval_rate, rate) + "\n")
                    progress.flush()
                    last_report = (now, stats.sent)
                    next_report = now + progress_interval
            else:
                continue
            break  # the duration is over
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Stop the source (a generator process, for one) before waiting on the flush.
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    try:
        sink.flush(flush_timeout)
    except KeyboardInterrupt:
        interrupted = True
    elapsed = clock() - started
    sink.close()
    undelivered = stats.sent - stats.delivered - stats.failed
    return RunReport(
        sent=stats.sent,
        delivered=stats.delivered,
        failed=stats.failed,
        undelivered=max(0, undelivered),
        elapsed_s=elapsed,
        interrupted=interrupted,
        errors=tuple(stats.errors.most_common(5)),
    )


def _progress_line(stats: DeliveryStats, interval_rate: float, target: float) -> str:
    target_text = f" (target {target:,.0f}/s)" if target > 0 else ""
    return (
        f"loadgen: sent {stats.sent:,} delivered {stats.delivered:,} failed {stats.failed:,}"
        f" - {interval_rate:,.0f} events/s{target_text}"
    )
