"""The consumer loop every service runs: poll a batch, decode, handle, publish, commit.

Guarantees (at-least-once with idempotent effects):

* offsets are committed synchronously, as explicit offsets, only after the handler made
  the batch's store effects durable and every message it published (outputs and dead
  letters) was acknowledged by the brokers;
* a record that fails validation or processing goes to `<topic>.dlq` with the reason in
  headers, and the rest of its batch carries on, so a bad record never blocks a partition;
* transient faults are retried with exponential backoff for a bounded time; after that
  the runtime stops without committing (the process exits, its partitions are redelivered
  to the next owner) rather than skipping anything;
* partitions are revoked cooperatively: the revocation callback runs between batches (it
  is called from inside `consume`), commits anything still pending, then lets them go.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from starling.events.codec import MAX_EVENT_BYTES, EventError, EventErrorKind, decode_as
from starling.runtime.config import RuntimeSettings
from starling.runtime.faults import call_with_retries, is_transient
from starling.runtime.handler import (
    PROCESSING_FAILED,
    DeadLetter,
    Handler,
    Outbox,
    OutputMessage,
    ProcessingError,
    Record,
    TransientError,
)
from starling.runtime.metrics import HealthState, MetricsServer, RuntimeMetrics
from starling.topics import DLQ_SUFFIX

log = logging.getLogger("starling.runtime")

TICK_INTERVAL_S = 1.0
LAG_INTERVAL_S = 5.0


class RuntimeFailedError(RuntimeError):
    """The runtime stopped without committing its last batch (retries exhausted, or a
    fatal client error); the process should exit non-zero."""


class ConsumerRuntime:
    """Runs one handler over its input topics until `request_stop()` (or a failure)."""

    def __init__(
        self,
        settings: RuntimeSettings,
        handler: Handler,
        *,
        serve_metrics: bool = True,
        consumer_overrides: dict[str, Any] | None = None,
        producer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.service = settings.starling_service
        self.metrics = RuntimeMetrics(self.service)
        # Liveness allows a full retry budget: waiting out an outage is not a hang.
        self.health = HealthState(stall_after_s=settings.starling_retry_budget_s + 30.0)
        self.health.store_check = handler.store_ready
        self._stop = threading.Event()
        self._input_types = dict(handler.input_types)
        # bytes as the input type: the handler takes payloads undecoded (pass-through).
        self._decoders: dict[str, Callable[[bytes], Any] | None] = {
            topic: None if event_type is bytes else msgspec.json.Decoder(event_type).decode
            for topic, event_type in self._input_types.items()
        }
        self._single_topic = next(iter(self._input_types)) if len(self._input_types) == 1 else None
        self._assigned: set[tuple[str, int]] = set()
        # Offsets processed but not yet committed (a failed commit is retried with the next).
        self._pending_commits: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._delivery_failures: list[tuple[Any, Any]] = []
        self._consumer = Consumer(
            {
                **settings.consumer_config(),
                "error_cb": self._on_client_error,
                **(consumer_overrides or {}),
            }
        )
        self._producer = Producer(
            {
                **settings.producer_config(),
                # Only failures come back: a Python callback per delivered message would
                # cost about as much as producing it.
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery_failure,
                "error_cb": self._on_client_error,
                **(producer_overrides or {}),
            }
        )
        self._metrics_server = (
            MetricsServer(settings.metrics_port, self.metrics.registry, self.health)
            if serve_metrics
            else None
        )
        self._fatal: str | None = None

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group (safe from any thread)."""
        self.health.stopping = True
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server is not None else None

    def run(self) -> None:
        """Consume until stopped. Raises RuntimeFailedError if a batch could not be completed."""
        if self._metrics_server is not None:
            self._metrics_server.start()
        topics = sorted(self._input_types)
        self._consumer.subscribe(
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("%s: consuming %s as group %s", self.service, topics, self.settings.group_id)
        failure: BaseException | None = None
        try:
            self._loop()
        except BaseException as error:
            failure = error
            raise
        finally:
            self._shutdown(committed_cleanly=failure is None)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        consume = self._consumer.consume
        batch_size = self.settings.starling_batch_size
        timeout = self.settings.starling_batch_timeout_ms / 1000.0
        next_tick = time.monotonic() + TICK_INTERVAL_S
        next_lag = time.monotonic() + LAG_INTERVAL_S
        health = self.health
        while not self._stop.is_set():
            health.beat()
            messages = consume(batch_size, timeout)
            if self._fatal is not None:
                raise RuntimeFailedError(f"fatal Kafka client error: {self._fatal}")
            if messages:
                self._process(messages)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_INTERVAL_S
                self._tick()
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL_S
                self._update_lag()

    def _process(self, messages: list[Any]) -> None:
        started = time.perf_counter()
        records: list[Record] = []
        dead_letters: list[DeadLetter] = []
        offsets: dict[tuple[str, int], int] = {}
        decoders = self._decoders
        append = records.append
        max_bytes = MAX_EVENT_BYTES
        # The per-message loop is the runtime's hot path: C calls and one dict store per
        # message, the compiled msgspec decoder called directly; the diagnosis of a bad
        # payload (which field, why) is only worked out when decoding fails.
        for message in messages:
            if message.error() is not None:
                self._on_message_error(message.error())
                continue
            topic = message.topic()
            offsets[(topic, message.partition())] = message.offset()
            value = message.value()
            decoder = decoders[topic]
            if decoder is None:
                append(Record(message, value))
                continue
            if value is not None and len(value) <= max_bytes:
                try:
                    append(Record(message, decoder(value)))
                    continue
                except (msgspec.ValidationError, msgspec.DecodeError):
                    pass
            dead_letters.append(self._diagnose(message, value))
        if self._single_topic is not None:
            counts = {self._single_topic: len(messages)}
        else:
            counts = {}
            for topic, _partition in offsets:
                counts[topic] = sum(1 for m in messages if m.topic() == topic)
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.consumed, topic).inc(count)

        outbox = self._handle_with_retries(records) if records else Outbox()
        outbox.dead_letters.extend(dead_letters)
        self._publish(outbox)
        self._commit(offsets)
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.processed, topic).inc(count)
        self.metrics.batch_seconds.labels(self.service).observe(time.perf_counter() - started)

    def _diagnose(self, message: Any, value: bytes | None) -> DeadLetter:
        if value is None:
            return DeadLetter(message, EventErrorKind.MALFORMED.value, "empty payload", None)
        try:
            decode_as(value, self._input_types[message.topic()])
        except EventError as error:
            return DeadLetter(message, error.kind.value, error.reason, error.field)
        # msgspec refused it but the codec accepted it: cannot happen with one schema;
        # keep the record safe in the DLQ rather than guess.
        return DeadLetter(message, EventErrorKind.INVALID.value, "rejected by the decoder", None)

    def _handle_with_retries(self, records: Sequence[Record]) -> Outbox:
        def attempt() -> Outbox:
            outbox = Outbox()
            try:
                self.handler.handle(records, outbox)
            except Exception as error:
                if is_transient(error):
                    raise
                return self._isolate_failures(records, error)
            return outbox

        return self._with_retries(attempt)

    def _isolate_failures(self, records: Sequence[Record], error: BaseException) -> Outbox:
        """A batch failed for a reason that is not transient: handle its records one by
        one, so only the records that fail on their own are dead-lettered. Effects are
        idempotent, so re-applying the ones that had succeeded changes nothing."""
        if len(records) > 1:
            log.warning(
                "%s: batch of %d failed (%s); isolating the failing records",
                self.service,
                len(records),
                error,
            )
        outbox = Outbox()
        for record in records:
            single = Outbox()
            try:
                self.handler.handle([record], single)
            except ProcessingError as failure:
                outbox.dead_letter(record, failure.kind, failure.reason, failure.field)
                continue
            except Exception as failure:
                if is_transient(failure):
                    raise
                log.exception("%s: record failed processing", self.service)
                outbox.dead_letter(
                    record, PROCESSING_FAILED, f"{type(failure).__name__}: {failure}"
                )
                continue
            outbox.messages.extend(single.messages)
            outbox.dead_letters.extend(single.dead_letters)
        return outbox

    def _tick(self) -> None:
        def attempt() -> Outbox:
            outbox = Outbox()
            self.handler.tick(outbox)
            return outbox

        self._publish(self._with_retries(attempt))

    def _with_retries(self, function: Callable[[], Outbox]) -> Outbox:
        def on_retry(_error: BaseException) -> None:
            self.metrics.retries.labels(self.service).inc()
            self.health.beat()

        try:
            return call_with_retries(
                function, self.settings.starling_retry_budget_s, self._stop.is_set, on_retry
            )
        except Exception as error:
            if is_transient(error):
                raise RuntimeFailedError(
                    f"{self.service}: transient fault outlasted the retry budget"
                    f" ({self.settings.starling_retry_budget_s:g} s) or shutdown began: {error}"
                ) from error
            raise

    # ------------------------------------------------------------------ publishing

    def _publish(self, outbox: Outbox) -> None:
        """Produce outputs and dead letters, then wait until the brokers acknowledged all
        of them; failed deliveries are produced again within the retry budget."""
        pending: list[tuple[str, bytes | None, bytes, Any]] = [
            (topic, key, value, None) for topic, key, value in outbox.messages
        ]
        pending.extend(self._dead_letter_message(letter) for letter in outbox.dead_letters)
        if pending:
            self._produce_and_confirm(outbox, pending)
        for callback in outbox.after_publish:
            self._with_retries(functools.partial(_run_callback, callback))

    def _produce_and_confirm(
        self, outbox: Outbox, pending: list[tuple[str, bytes | None, bytes, Any]]
    ) -> None:
        self._count_outputs(outbox.messages)
        for letter in outbox.dead_letters:
            topic = letter.message.topic()
            self.metrics.for_topic(self.metrics.dead_lettered, topic).inc()
            self.metrics.failed.labels(self.service, topic, letter.kind).inc()
            log.warning(
                "%s: dead-lettered %s[%d]@%d: %s%s: %s",
                self.service,
                topic,
                letter.message.partition(),
                letter.message.offset(),
                letter.kind,
                f" at {letter.field}" if letter.field else "",
                letter.reason,
            )

        def attempt() -> Outbox:
            self._deliver(pending)
            return Outbox()

        self._with_retries(attempt)

    def _deliver(self, pending: list[tuple[str, bytes | None, bytes, Any]]) -> None:
        producer = self._producer
        produce = producer.produce
        self._delivery_failures.clear()
        for topic, key, value, headers in pending:
            while True:
                try:
                    if headers is None:
                        produce(topic, value, key)
                    else:
                        produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let it drain
        deadline = time.monotonic() + self.settings.starling_retry_budget_s
        while producer.flush(1.0) > 0:
            self.health.beat()
            if self._stop.is_set() and time.monotonic() > deadline:
                break
        if len(producer) > 0 or self._delivery_failures:
            failed = [
                (message.topic(), message.key(), message.value(), message.headers())
                for _error, message in self._delivery_failures
            ]
            reason = self._delivery_failures[0][0] if self._delivery_failures else "flush gave up"
            self._delivery_failures.clear()
            pending[:] = failed
            raise _DeliveryFailedError(f"{len(failed)} message(s) not acknowledged: {reason}")

    def _dead_letter_message(self, letter: DeadLetter) -> tuple[str, bytes | None, bytes, Any]:
        message = letter.message
        topic = message.topic()
        headers: list[tuple[str, bytes]] = list(message.headers() or [])
        headers.extend(
            (name, value.encode())
            for name, value in (
                ("starling.error.kind", letter.kind),
                ("starling.error.field", letter.field or ""),
                ("starling.error.message", letter.reason[:1000]),
                ("starling.source.topic", topic),
                ("starling.source.partition", str(message.partition())),
                ("starling.source.offset", str(message.offset())),
                ("starling.service", self.service),
                ("starling.failed_at", datetime.now(UTC).isoformat(timespec="milliseconds")),
            )
        )
        return (topic + DLQ_SUFFIX, message.key(), message.value() or b"", headers)

    def _count_outputs(self, messages: list[OutputMessage]) -> None:
        counts: dict[str, int] = {}
        for topic, _key, _value in messages:
            counts[topic] = counts.get(topic, 0) + 1
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.produced, topic).inc(count)

    # ------------------------------------------------------------------ offsets

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        pending = self._pending_commits
        for partition, offset in offsets.items():
            pending[partition] = max(offset, pending.get(partition, -1))
        self._commit_pending()

    def _commit_pending(self, only: set[tuple[str, int]] | None = None) -> None:
        pending = self._pending_commits
        selected = [p for p in pending if only is None or p in only]
        if not selected:
            return
        # The committed offset is the next one to read.
        offsets = [
            TopicPartition(topic, part, pending[(topic, part)] + 1) for topic, part in selected
        ]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Kept pending: the next commit carries it. Redelivery on a crash before then
            # is harmless because effects are idempotent.
            self.metrics.commit_failures.labels(self.service).inc()
            log.warning("%s: commit failed, will retry with the next batch: %s", self.service, exc)
            return
        for committed in result or ():
            key = (committed.topic, committed.partition)
            if committed.error is None:
                self._committed[key] = committed.offset
                if pending.get(key, -1) + 1 <= committed.offset:
                    pending.pop(key, None)

    def _update_lag(self) -> None:
        for topic, partition in list(self._assigned):
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            committed = self._committed.get((topic, partition))
            if high is None or high < 0 or committed is None:
                continue
            self.metrics.lag.labels(self.service, topic, str(partition)).set(
                max(0, high - committed)
            )

    # ------------------------------------------------------------------ rebalancing

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        added = [(tp.topic, tp.partition) for tp in partitions]
        self._assigned.update(added)
        self.health.joined = True
        self.metrics.assigned.labels(self.service).set(len(self._assigned))
        if added:
            log.info("%s: assigned %s", self.service, _describe(added))
        self.handler.partitions_assigned(added)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        # Called between batches (from inside consume or close): nothing is in flight,
        # so committing what is pending finishes the work for these partitions.
        self._commit_pending(set(revoked))
        self._release(revoked)
        self.handler.partitions_revoked(revoked)
        if revoked:
            log.info("%s: revoked %s", self.service, _describe(revoked))

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        lost = [(tp.topic, tp.partition) for tp in partitions]
        # Someone else may own them already: committing now could move their offsets.
        self._release(lost)
        self.handler.partitions_revoked(lost)
        log.warning("%s: lost %s (not committed; they will be redelivered)", self.service, lost)

    def _release(self, partitions: list[tuple[str, int]]) -> None:
        for partition in partitions:
            self._assigned.discard(partition)
            self._pending_commits.pop(partition, None)
            self._committed.pop(partition, None)
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.lag.remove(self.service, partition[0], str(partition[1]))
        self.metrics.assigned.labels(self.service).set(len(self._assigned))

    # ------------------------------------------------------------------ errors and shutdown

    def _on_message_error(self, error: Any) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            self._fatal = error.str()
        else:
            log.warning("%s: consumer error: %s", self.service, error.str())

    def _on_client_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = error.str()
            log.error("%s: fatal Kafka client error: %s", self.service, error.str())
        else:
            # Brokers restarting and the like: librdkafka retries on its own.
            log.info("%s: Kafka client: %s", self.service, error.str())

    def _on_delivery_failure(self, error: Any, message: Any) -> None:
        if error is not None:
            self._delivery_failures.append((error.str(), message))

    def _shutdown(self, *, committed_cleanly: bool) -> None:
        self.health.stopping = True
        try:
            if not committed_cleanly:
                # The last batch is not done: drop its offsets so leaving the group
                # cannot commit them; it will be redelivered.
                self._pending_commits.clear()
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("%s: consumer close: %s", self.service, exc)
        remaining = self._producer.flush(5.0)
        if remaining:
            log.warning(
                "%s: %d produced message(s) unconfirmed at shutdown", self.service, remaining
            )
        try:
            self.handler.close()
        finally:
            if self._metrics_server is not None:
                self._metrics_server.stop()


def _run_callback(callback: Callable[[], None]) -> Outbox:
    callback()
    return Outbox()


class _DeliveryFailedError(TransientError):
    """Some produced messages were not acknowledged; they are retried (transient)."""


def _describe(partitions: list[tuple[str, int]]) -> str:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return ", ".join(f"{topic}{sorted(parts)}" for topic, parts in sorted(by_topic.items()))
