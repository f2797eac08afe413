"""Plumbing shared by the task functions: reading a catalog topic's interval with dead
letters routed, and making progress visible to lag monitoring."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from starling.events import EventBase
from starling_operators import kafka, settings
from starling_operators.records import Decoded, dead_letter_message, decode_records, dlq_topic

log = logging.getLogger(__name__)
E = TypeVar("E", bound=EventBase)


@dataclass(frozen=True)
class IntervalEvents(Generic[E]):
    topic: str
    decoded: Decoded[E]
    end_offsets: dict[int, int]
    records: int


def as_utc(moment: datetime) -> datetime:
    """A plain `datetime` in UTC: Airflow hands tasks pendulum `DateTime`s, which msgspec
    (event encoding, store snapshots) does not encode."""
    return datetime.fromtimestamp(moment.timestamp(), UTC)


def read_events(
    config: Mapping[str, Any],
    catalog_topic: str,
    event_type: type[E],
    start: datetime,
    end: datetime,
    purpose: str,
    *,
    dead_letters: bool = True,
) -> IntervalEvents[E]:
    """The interval's events of `catalog_topic`; records that are not valid events go to
    the topic's DLQ (with the error in headers) unless `dead_letters` is False (a task that
    re-reads a lookback others already cleaned would only duplicate them)."""
    topic = settings.topic(catalog_topic)
    read = kafka.read_interval(config, topic, start, end, settings.group_id(purpose))
    decoded = decode_records(read.records, event_type)
    if decoded.dead_letters and dead_letters:
        producer_name = f"{settings.SERVICE_NAME}:{purpose}"
        kafka.produce_all(
            config,
            dlq_topic(topic),
            [dead_letter_message(letter, producer_name) for letter in decoded.dead_letters],
        )
        log.warning(
            "%d invalid record(s) of %s sent to %s",
            len(decoded.dead_letters),
            topic,
            dlq_topic(topic),
        )
    log.info("read %d record(s) of %s in [%s, %s)", len(read.records), topic, start, end)
    return IntervalEvents(topic, decoded, read.end_offsets, len(read.records))


def mark_done(config: Mapping[str, Any], purpose: str, events: IntervalEvents[Any]) -> None:
    """After the effect is durable: advance the task family's group (lag monitoring)."""
    kafka.commit_progress(config, settings.group_id(purpose), events.topic, events.end_offsets)
