"""An idempotent, acks=all producer whose sends an asyncio caller can await.

The gateway and the identity service answer a client only once the brokers acknowledged
its event, and within a bound: librdkafka would otherwise retry for its full
`message.timeout.ms` while the client waits. The delivery report arrives on a poll thread
and is handed to the event loop; a send that is not acknowledged in time raises
NotAcknowledgedError.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger("starling.web.producer")

# Readiness asks the brokers for metadata; caching the answer keeps frequent probes cheap.
_READY_CACHE_S = 2.0
_METADATA_TIMEOUT_S = 2.0


class NotAcknowledgedError(Exception):
    """The brokers did not acknowledge the event (in time, or at all)."""


@dataclass(frozen=True)
class Delivery:
    topic: str
    partition: int
    offset: int


class AckingProducer:
    def __init__(self, config: dict[str, Any], ack_timeout_s: float, probe_topic: str) -> None:
        self.ack_timeout_s = ack_timeout_s
        self._probe_topic = probe_topic
        self._fatal: str | None = None
        self._producer = Producer(
            {
                **config,
                # librdkafka gives up on a message about when the client is told 503, so
                # it does not keep delivering long after the client moved on (an event
                # delivered after a 503 is the same event_id: consumers dedupe it).
                "message.timeout.ms": max(int(ack_timeout_s * 1000), 1000),
                # A client waits on each event: do not hold it back to fill batches.
                "linger.ms": 1,
                "error_cb": self._on_error,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="acking-producer", daemon=True)
        self._closed = False
        # The probe (a metrics-server thread) must not ask a client `close` is destroying.
        self._closing = threading.Lock()
        self._ready_at = -1e9
        self._ready = False

    def start(self) -> None:
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = str(error)
            log.error("fatal producer error: %s", error)
        else:
            log.warning("producer: %s", error)

    @property
    def fatal_error(self) -> str | None:
        return self._fatal

    async def send(
        self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None
    ) -> Delivery:
        """Produce and wait for the acknowledgement; NotAcknowledgedError otherwise.
        `timestamp_ms` is the record's timestamp: the event's time (see docs/airflow.md)."""
        if self._fatal is not None:
            raise NotAcknowledgedError(f"the producer failed: {self._fatal}")
        if self._closed:
            raise NotAcknowledgedError("the producer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def settle(error: KafkaError | None, message: Any) -> None:
            # Runs on the poll thread; the future belongs to the loop.
            if error is not None:
                outcome: Delivery | BaseException = NotAcknowledgedError(str(error))
            else:
                outcome = Delivery(message.topic(), message.partition(), message.offset())
            loop.call_soon_threadsafe(_resolve, future, outcome)

        try:
            if timestamp_ms is None:
                self._producer.produce(topic, value, key, on_delivery=settle)
            else:
                self._producer.produce(
                    topic, value, key, on_delivery=settle, timestamp=timestamp_ms
                )
        except BufferError as error:
            raise NotAcknowledgedError("the producer's queue is full") from error
        except KafkaException as error:
            raise NotAcknowledgedError(str(error)) from error
        try:
            return await asyncio.wait_for(future, self.ack_timeout_s)
        except TimeoutError as error:
            raise NotAcknowledgedError(
                f"no acknowledgement from the brokers within {self.ack_timeout_s:g} s"
            ) from error

    def reachable(self) -> bool:
        """Brokers answer a metadata request for the probe topic (cached; blocking)."""
        if self._closed:
            return False
        now = time.monotonic()
        if now - self._ready_at < _READY_CACHE_S:
            return self._ready
        with self._closing:
            if self._closed:
                return False
            try:
                metadata = self._producer.list_topics(
                    self._probe_topic, timeout=_METADATA_TIMEOUT_S
                )
                topic = metadata.topics.get(self._probe_topic)
                self._ready = topic is not None and topic.error is None and self._fatal is None
            except KafkaException:
                self._ready = False
        self._ready_at = time.monotonic()
        return self._ready

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is pending (for up to `timeout_s`), stop polling, and shut the
        client down: without `Producer.close()` librdkafka keeps its broker connections,
        reconnecting, until the object is garbage-collected."""
        if self._closed:
            return
        self._producer.flush(timeout_s)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        with self._closing:
            self._closed = True
            # Flushes again, without a bound, but whatever is left fails within its
            # `message.timeout.ms` (the ack timeout); never while the poll thread polls.
            self._producer.close()


def _resolve(future: asyncio.Future[Delivery], outcome: Delivery | BaseException) -> None:
    if future.done():  # the caller timed out (or went away) first
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
