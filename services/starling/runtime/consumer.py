"""The consumer loop every service runs: poll a batch, decode, handle, publish, commit.

Guarantees (at-least-once with idempotent effects):

* a batch's offsets become committable only after the handler made its store effects
  durable and every message it published (outputs and dead letters) was acknowledged by
  the brokers; they are then committed asynchronously, as explicit offsets, one request
  in flight at a time (`starling.runtime.offsets`), and synchronously on revocation and
  at shutdown. A lost asynchronous commit means redelivery of finished work, never a
  skipped message;
* a record that fails validation or processing goes to `<topic>.dlq` with the reason in
  headers, and the rest of its batch carries on, so a bad record never blocks a partition;
* transient faults are retried with exponential backoff for a bounded time; after that
  the runtime stops without committing (the process exits, its partitions are redelivered
  to the next owner) rather than skipping anything;
* partitions are revoked cooperatively: the revocation callback runs between batches (it
  is called from inside `consume`), commits the finished work of those partitions, then
  lets them go; nothing is committed for a partition after it was revoked or lost.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

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
from starling.runtime.offsets import CommitLedger, Partition, next_offsets
from starling.topics import DLQ_SUFFIX

log = logging.getLogger("starling.runtime")

TICK_INTERVAL_S = 1.0
LAG_INTERVAL_S = 5.0

# Tracked objects a batch keeps alive per message, about: the Message, the decoded event
# and its parts, what the handler builds from it.
GC_OBJECTS_PER_MESSAGE = 10

# Unbound C methods, mapped over a batch so per-message work stays in C.
_error_of: Callable[[Any], Any] = Message.error
_value_of: Callable[[Any], Any] = Message.value
_topic_of: Callable[[Any], Any] = Message.topic


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
        # Build the clients from their configuration (callbacks included): stand-ins in tests.
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.service = settings.starling_service
        self.metrics = RuntimeMetrics(self.service)
        # Liveness allows a full retry budget: waiting out an outage is not a hang.
        self.health = HealthState(stall_after_s=settings.starling_retry_budget_s + 30.0)
        self.health.store_check = handler.store_ready
        register = getattr(handler, "register_metrics", None)
        if register is not None:  # a Handler not built on BaseHandler may lack it
            register(self.metrics.registry)
        # Bound first: a taken port is a configuration error (ConfigError), reported
        # before any Kafka client exists to add its own noise.
        self._metrics_server = (
            MetricsServer(settings.metrics_port, self.metrics.registry, self.health)
            if serve_metrics
            else None
        )
        self._stop = threading.Event()
        self._input_types = dict(handler.input_types)
        # bytes as the input type: the handler takes payloads undecoded (pass-through).
        self._decoders: dict[str, Callable[[bytes], Any] | None] = {
            topic: None if event_type is bytes else msgspec.json.Decoder(event_type).decode
            for topic, event_type in self._input_types.items()
        }
        self._single_topic = next(iter(self._input_types)) if len(self._input_types) == 1 else None
        # Owned partitions, finished offsets, confirmed offsets (see starling.runtime.offsets).
        self._ledger = CommitLedger()
        self._delivery_failures: list[tuple[Any, Any]] = []
        self._consumer = consumer_factory(
            {
                **settings.consumer_config(),
                "error_cb": self._on_client_error,
                # Answers to asynchronous commits, served inside consume() and close().
                "on_commit": self._on_commit,
                **(consumer_overrides or {}),
            }
        )
        self._producer = producer_factory(
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
            # The bound port: with METRICS_PORT=0 (several services on one machine) this
            # line is the only place it shows.
            log.info("%s: metrics and health on :%d", self.service, self._metrics_server.port)
        make_room_for_batches(self.settings.starling_batch_size)
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
            # Free the batch now rather than when the next one is bound: its memory is
            # then reused, still in cache, for the next batch's messages.
            del messages
            # Also without traffic: finished offsets held back while a commit was in
            # flight go out once its answer arrived (served by the consume above).
            self._commit_async()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_INTERVAL_S
                self._tick()
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL_S
                self._update_lag()

    def _process(self, messages: list[Any]) -> None:
        started = time.perf_counter()
        # The runtime's hot path. Per message only C runs: `map` over the Message methods,
        # msgspec's decoder and Record constructor, one dict build for the offsets. A
        # Python loop over the batch (five method calls, a dict store and a record per
        # message) cost more than the raw client's whole consume.
        # KafkaError objects are always true, so `any` finds an error event in one C pass.
        if any(map(_error_of, messages)):
            messages = self._without_errors(messages)
            if not messages:
                return
        records, dead_letters = self._records(messages)
        if self._single_topic is not None:
            counts: dict[str, int] = {self._single_topic: len(messages)}
        else:
            counts = Counter(map(_topic_of, messages))
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.consumed, topic).inc(count)

        outbox = self._handle_with_retries(records) if records else Outbox()
        outbox.dead_letters.extend(dead_letters)
        self._publish(outbox)
        # Effects durable, outputs and dead letters acknowledged: the batch is finished
        # and its offsets may be committed (if a step above raised, they never get here).
        self._ledger.finish(next_offsets(messages, self._single_topic))
        self._commit_async()
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.processed, topic).inc(count)
        self.metrics.batch_seconds.labels(self.service).observe(time.perf_counter() - started)

    def _without_errors(self, messages: list[Any]) -> list[Any]:
        """Error events (rare) are reported and dropped; the rest is the batch."""
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            else:
                self._on_message_error(error)
        return kept

    def _records(self, messages: list[Any]) -> tuple[list[Record], list[DeadLetter]]:
        topic = self._single_topic
        if topic is not None:
            decoder = self._decoders[topic]
            if decoder is None:
                return list(map(Record, messages, map(_value_of, messages))), []
            events = _decode_all(decoder, messages)
            if events is not None:
                return list(map(Record, messages, events)), []
        # Several topics, or a batch with a bad payload: one by one, which says which
        # records are bad and why.
        return self._records_one_by_one(messages)

    def _records_one_by_one(self, messages: list[Any]) -> tuple[list[Record], list[DeadLetter]]:
        records: list[Record] = []
        dead_letters: list[DeadLetter] = []
        decoders = self._decoders
        append = records.append
        max_bytes = MAX_EVENT_BYTES
        for message in messages:
            value = message.value()
            decoder = decoders[message.topic()]
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
        return records, dead_letters

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
        pending: list[_Pending] = [
            (topic, key, value, None, timestamp) for topic, key, value, timestamp in outbox.messages
        ]
        pending.extend(self._dead_letter_message(letter) for letter in outbox.dead_letters)
        if pending:
            self._produce_and_confirm(outbox, pending)
        for callback in outbox.after_publish:
            self._with_retries(functools.partial(_run_callback, callback))

    def _produce_and_confirm(self, outbox: Outbox, pending: list[_Pending]) -> None:
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

    def _deliver(self, pending: list[_Pending]) -> None:
        producer = self._producer
        produce = producer.produce
        self._delivery_failures.clear()
        for topic, key, value, headers, timestamp in pending:
            while True:
                try:
                    if headers is None and timestamp is None:
                        produce(topic, value, key)
                    elif timestamp is None:
                        produce(topic, value, key, headers=headers)
                    else:
                        produce(topic, value, key, headers=headers, timestamp=timestamp)
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
                (
                    message.topic(),
                    message.key(),
                    message.value(),
                    message.headers(),
                    _timestamp_of(message),
                )
                for _error, message in self._delivery_failures
            ]
            reason = self._delivery_failures[0][0] if self._delivery_failures else "flush gave up"
            self._delivery_failures.clear()
            pending[:] = failed
            raise _DeliveryFailedError(f"{len(failed)} message(s) not acknowledged: {reason}")

    def _dead_letter_message(self, letter: DeadLetter) -> _Pending:
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
        # The original timestamp: a replay of the DLQ lands in the interval it came from.
        return (
            topic + DLQ_SUFFIX,
            message.key(),
            message.value() or b"",
            headers,
            _timestamp_of(message),
        )

    def _count_outputs(self, messages: list[OutputMessage]) -> None:
        counts: dict[str, int] = {}
        for topic, _key, _value, _timestamp in messages:
            counts[topic] = counts.get(topic, 0) + 1
        for topic, count in counts.items():
            self.metrics.for_topic(self.metrics.produced, topic).inc(count)

    # ------------------------------------------------------------------ offsets

    def _commit_async(self) -> None:
        """Commit finished offsets without waiting for the coordinator's answer.

        Safe because the ledger only holds finished work: if this commit fails or the
        process dies first, that work is redelivered (effects are idempotent), nothing is
        skipped. One request at a time, so a later commit never lands before an earlier
        one; offsets finished meanwhile go with the next call (every loop iteration)."""
        ledger = self._ledger
        if not ledger.may_send_async():
            return
        offsets = ledger.due()
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            self._commit_failed(exc)
            return
        ledger.sent_async()

    def _commit_now(self, only: Collection[Partition] | None = None) -> None:
        """Commit finished offsets and wait for the answer: where ordering demands it
        (partitions about to go to another member, shutdown)."""
        offsets = self._ledger.due(only)
        if not offsets:
            return
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(exc)
            return
        if not self._ledger.sync_result(result or ()):
            self._commit_failed(_first_error(result or ()))

    def _on_commit(self, error: Any, partitions: list[Any]) -> None:
        # Served inside consume()/close(); must not raise (it would surface from there).
        if not self._ledger.async_result(error, partitions):
            self._commit_failed(error if error is not None else _first_error(partitions))

    def _commit_failed(self, reason: Any) -> None:
        # The offsets stay due: the next commit carries them. A crash before then only
        # means redelivery of finished work.
        self.metrics.commit_failures.labels(self.service).inc()
        log.warning("%s: offset commit failed, retried with the next one: %s", self.service, reason)

    def _update_lag(self) -> None:
        committed_offsets = self._ledger.committed
        for topic, partition in list(self._ledger.owned):
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            committed = committed_offsets.get((topic, partition))
            if high is None or high < 0 or committed is None:
                continue
            self.metrics.lag.labels(self.service, topic, str(partition)).set(
                max(0, high - committed)
            )

    # ------------------------------------------------------------------ rebalancing

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        added = [(tp.topic, tp.partition) for tp in partitions]
        self._ledger.assign(added)
        self.health.joined = True
        self.metrics.assigned.labels(self.service).set(len(self._ledger.owned))
        if added:
            log.info("%s: assigned %s", self.service, _describe(added))
        self.handler.partitions_assigned(added)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        # Called between batches (from inside consume or close), so the ledger holds only
        # finished work. Synchronous: the partitions go to another member right after. An
        # asynchronous commit still in flight holds finished work too, at offsets no higher
        # than these: whichever lands last, nothing unfinished is committed (at worst some
        # finished work is redelivered). Once the partitions belong to another member, in
        # a later generation, the coordinator refuses this member's older commits.
        self._commit_now(set(revoked))
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

    def _release(self, partitions: list[Partition]) -> None:
        # From here on nothing is committed for them: offsets of theirs still in the
        # batch being consumed, or in a late commit answer, are ignored by the ledger.
        self._ledger.release(partitions)
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.lag.remove(self.service, topic, str(partition))
        self.metrics.assigned.labels(self.service).set(len(self._ledger.owned))

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
            if committed_cleanly:
                # Commit what finished, synchronously; close() then serves the answer to
                # an asynchronous commit still in flight.
                self._commit_now()
            else:
                # The loop failed: commit nothing more (also not from the revocation
                # callback inside close()). The failed batch never became committable;
                # finished batches whose commit is unconfirmed are redelivered; and no
                # synchronous commit waits on a coordinator that may be gone.
                self._ledger.drop_unconfirmed()
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


def make_room_for_batches(batch_size: int) -> None:
    """Raise the collector's first threshold above what one batch keeps alive.

    With the default (700 allocations) the collector runs several times while a batch of
    thousands of messages is alive, finds them all reachable and promotes them, so they
    reach the oldest generation and trigger full collections over the whole heap:
    measured, that tripled the client's own cost per message at 5000-message batches
    (`consume` alone, 1.2-1.6 us instead of 0.3-0.45 us per message). The count that
    triggers a collection is allocations minus deallocations, so above what a batch keeps
    alive collections are rare and find earlier batches already freed by reference
    counting. Process-wide, only ever raised; cyclic garbage waits a little longer.
    """
    gen0, gen1, gen2 = gc.get_threshold()
    wanted = GC_OBJECTS_PER_MESSAGE * batch_size
    if 0 < gen0 < wanted:  # 0: collection disabled by the process owner; leave it
        gc.set_threshold(wanted, gen1, gen2)


def _decode_all(decoder: Callable[[bytes], Any], messages: list[Any]) -> list[Any] | None:
    """Every payload decoded, or None if any is empty, oversized or invalid (the caller
    then goes one by one to find which)."""
    if max(map(len, messages)) > MAX_EVENT_BYTES:  # len(message): its payload's size
        return None
    try:
        return list(map(decoder, map(_value_of, messages)))
    except (msgspec.DecodeError, TypeError):  # ValidationError included; TypeError: None
        return None


# (topic, key, value, headers or None, timestamp in ms or None)
_Pending = tuple[str, bytes | None, bytes, Any, int | None]


def _timestamp_of(message: Any) -> int | None:
    kind, timestamp = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else int(timestamp)


def _first_error(partitions: Iterable[Any]) -> Any:
    return next((tp.error for tp in partitions if tp.error is not None), "unknown error")


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
