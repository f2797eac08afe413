"""From Kafka records to events and back: strict decoding with dead letters, outgoing
messages keyed and timestamped from the event, and deterministic event ids.

Dead letters carry the same `starling.*` headers the stream services write, so one DLQ
tool reads both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from starling.events import EventBase, EventError, decode_as, encode
from starling.topics import DLQ_SUFFIX
from starling_operators.kafka import KafkaRecord, OutgoingMessage

E = TypeVar("E", bound=EventBase)

# Ids of events Airflow derives (recommendations, alerts) are uuid5 of what they are
# about, so a re-run of the same interval emits the same ids and consumers dedupe them.
STARLING_AIRFLOW_NAMESPACE = uuid.UUID("5f0d3c1e-8a53-4b7e-9a51-2f6f7f1c0a11")


def derived_event_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(STARLING_AIRFLOW_NAMESPACE, "/".join(str(part) for part in parts))


@dataclass(frozen=True)
class DeadLetter:
    record: KafkaRecord
    error: EventError


@dataclass(frozen=True)
class Decoded(Generic[E]):
    events: list[E]
    dead_letters: list[DeadLetter]


def decode_records(records: Iterable[KafkaRecord], event_type: type[E]) -> Decoded[E]:
    """Decode each record as `event_type`; a record that is not one is a dead letter, never
    an exception that would stop the whole interval."""
    events: list[E] = []
    dead: list[DeadLetter] = []
    for record in records:
        if record.value is None:  # a tombstone carries no event
            continue
        try:
            events.append(decode_as(record.value, event_type))
        except EventError as error:
            dead.append(DeadLetter(record, error))
    return Decoded(events, dead)


def dead_letter_message(letter: DeadLetter, producer_name: str) -> OutgoingMessage:
    record, error = letter.record, letter.error
    headers = [
        *record.headers,
        *(
            (name, value.encode())
            for name, value in (
                ("starling.error.kind", error.kind.value),
                ("starling.error.field", error.field or ""),
                ("starling.error.message", error.reason[:1000]),
                ("starling.source.topic", record.topic),
                ("starling.source.partition", str(record.partition)),
                ("starling.source.offset", str(record.offset)),
                ("starling.service", producer_name),
                ("starling.failed_at", datetime.now(UTC).isoformat(timespec="milliseconds")),
            )
        ),
    ]
    return OutgoingMessage(
        key=record.key,
        value=record.value or b"",
        timestamp_ms=record.timestamp_ms,
        headers=tuple(headers),
    )


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def event_message(event: EventBase) -> OutgoingMessage:
    """Keyed by the event's partition key, timestamped with its event time (so readers
    that select an interval by record timestamp find it where it happened)."""
    return OutgoingMessage(
        key=event.partition_key(),
        value=encode(event),
        timestamp_ms=int(event.event_time.timestamp() * 1000),
    )
