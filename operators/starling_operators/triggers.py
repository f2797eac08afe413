"""The login watcher's trigger: the provider's shared-stream Kafka trigger, validating.

`KafkaSharedStreamTrigger` (Airflow >= 3.3) runs one consumer per topic set in the
triggerer and commits a message's offset only after the asset event derived from it is
stored in the metadata database; a triggerer that dies in between gets the message again.
That is the delivery guarantee the login DAG needs (the older `KafkaMessageQueueTrigger`
commits as it reads, so a crash between read and persist loses the login).

What we add on top:
- each message is decoded as a `UserLogin` in the triggerer; a valid one fires the asset
  with a small JSON payload (the record, base64, plus user and event id for the UI);
- an invalid one is *rejected*: no DAG run for garbage. The provider then dead-letters it
  before committing past it; ours writes it with the same `starling.*` headers the stream
  services and tasks use (kind, field, reason, source topic/partition/offset), so one DLQ
  tool reads every dead letter.

The class is imported by dotted path in the triggerer, so it lives in this installed
package, never in `dags/`.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.providers.apache.kafka.triggers.shared_stream import (
    KafkaBrokerPayload,
    KafkaSharedStreamProducer,
    KafkaSharedStreamTrigger,
)
from airflow.triggers.base import TriggerEvent
from airflow.triggers.shared_stream import reject_shared_stream_event

from starling.events import EventError, EventErrorKind, UserLogin, decode_as
from starling_operators import kafka
from starling_operators.connection import kafka_config
from starling_operators.kafka import KafkaRecord
from starling_operators.records import DeadLetter, dead_letter_message

log = logging.getLogger(__name__)

WATCHER_NAME = "login-watcher"


def login_trigger_payload(value: bytes | None) -> dict[str, Any] | None:
    """The asset event's payload for one login record, or None when it is not a valid
    `UserLogin` (the caller rejects it). JSON-serialisable: it becomes the event's extra."""
    try:
        login = decode_as(value or b"", UserLogin)
    except EventError:
        return None
    return {
        "user_id": login.user_id,
        "event_id": str(login.event_id),
        "value": base64.b64encode(value or b"").decode(),
    }


class LoginDeadLetterProducer(KafkaSharedStreamProducer):
    """The provider's shared-stream consumer, dead-lettering rejected logins with our
    headers. Everything else (commit after persist, redelivery of unacknowledged
    messages, per-partition ordering of commits) is the provider's."""

    def _send_to_dlq(self, topic: str, payloads: list[KafkaBrokerPayload]) -> None:
        letters = []
        for payload in payloads:
            record = KafkaRecord(
                topic=payload.topic,
                partition=payload.partition,
                offset=payload.offset,
                timestamp_ms=0,
                key=payload.key,
                value=payload.value,
            )
            try:
                decode_as(payload.value or b"", UserLogin)
                # The filter rejects only what does not decode; keep the record anyway
                # rather than drop it unexplained if the two ever disagree.
                error = EventError(EventErrorKind.INVALID, "rejected by the login watcher")
            except EventError as decode_error:
                error = decode_error
            # The shared stream does not hand over the record's timestamp: let the broker
            # stamp the dead letter (timestamp 0 would make retention delete it at once).
            message = dead_letter_message(DeadLetter(record, error), WATCHER_NAME)
            letters.append(dataclasses.replace(message, timestamp_ms=None))
        # produce_all raises unless every letter is acknowledged: the provider then fails
        # the stream without committing, and the records come back, nothing is lost.
        kafka.produce_all(kafka_config(self.kafka_config_id), topic, letters)
        log.warning("dead-lettered %d invalid login record(s) to %s", len(letters), topic)


class LoginStreamTrigger(KafkaSharedStreamTrigger):
    """Fires the login asset once per valid `UserLogin`; rejects the rest (see module doc).

    `dlq_topic` is required: a rejected record must go somewhere, never be dropped."""

    def __init__(
        self,
        *,
        topics: Sequence[str],
        dlq_topic: str,
        kafka_config_id: str = "kafka_default",
        poll_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            topics=topics,
            kafka_config_id=kafka_config_id,
            poll_timeout=poll_timeout,
            dlq_topic=dlq_topic,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "topics": self.topics,
                "kafka_config_id": self.kafka_config_id,
                "poll_timeout": self.poll_timeout,
                "dlq_topic": self.dlq_topic,
            },
        )

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> KafkaSharedStreamProducer:
        return LoginDeadLetterProducer(
            topics=kwargs["topics"],
            kafka_config_id=kwargs["kafka_config_id"],
            poll_timeout=kwargs["poll_timeout"],
            dlq_topic=kwargs["dlq_topic"],
        )

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncIterator[TriggerEvent]:
        # Each event is yielded before the next record is pulled: that is how the manager
        # ties an asset event to the record it came from (see airflow.triggers.shared_stream).
        async for value in shared_stream:
            payload = login_trigger_payload(value)
            if payload is None:
                reject_shared_stream_event()
                continue
            # TriggerEvent.__init__ carries no annotations in Airflow 3.3.
            yield TriggerEvent(payload)  # type: ignore[no-untyped-call]
