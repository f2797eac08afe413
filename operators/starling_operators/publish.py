"""Validated, bounded publishing of events to catalog topics (used by tasks and operators)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from operator import or_
from typing import Any

from starling.events import EventBase, EventError, decode_as, encode
from starling.topics import CATALOG
from starling_operators import kafka, settings
from starling_operators.records import event_message

log = logging.getLogger(__name__)


class InvalidEventError(ValueError):
    """An event a task wanted to publish breaks its schema: a bug in the task, so nothing
    of the batch is sent."""


def _accepted_types(catalog_topic: str) -> Any:
    spec = CATALOG.get(catalog_topic)
    if not spec.event_types:
        raise ValueError(f"topic {catalog_topic} carries no event type (is it a DLQ?)")
    return reduce(or_, spec.event_types)


def validate_payloads(catalog_topic: str, payloads: Iterable[bytes]) -> list[EventBase]:
    """Decode every payload strictly as one of the topic's event types; the first failure
    names its position and field."""
    accepted = _accepted_types(catalog_topic)
    events: list[EventBase] = []
    for position, payload in enumerate(payloads):
        try:
            events.append(decode_as(payload, accepted))
        except EventError as error:
            raise InvalidEventError(
                f"event #{position} for topic {catalog_topic} is invalid: {error}"
            ) from error
    return events


def publish_events(
    kafka_config: Mapping[str, Any],
    catalog_topic: str,
    events: Sequence[EventBase],
    timeout: float = kafka.DEFAULT_TIMEOUT_S,
) -> kafka.ProduceReport:
    """Validate (encode + strict decode: struct construction alone checks no constraints),
    then produce all with an idempotent producer; raise unless every one was delivered."""
    checked = validate_payloads(catalog_topic, (encode(event) for event in events))
    topic = settings.topic(catalog_topic)
    if not checked:
        log.info("nothing to publish to %s", topic)
        return kafka.ProduceReport(topic, 0, 0.0)
    report = kafka.produce_all(
        kafka_config, topic, [event_message(event) for event in checked], timeout
    )
    log.info("published %d event(s) to %s in %.2f s", report.delivered, topic, report.seconds)
    return report
