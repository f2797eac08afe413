"""Callables the Kafka provider loads by dotted path (`apply_function`,
`producer_function`): they must be importable in the triggerer and workers, so they live in
this installed package, never in `dags/`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from starling.events import EventError, UserLogin, decode_as


def login_message_payload(message: Any) -> dict[str, Any]:
    """apply_function of the login watcher (`KafkaMessageQueueTrigger`): every message fires
    the asset, carrying where it came from and its payload; an invalid one is marked so the
    DAG dead-letters it (returning None here would silently drop it: the trigger commits
    non-matching messages).

    The payload must be JSON-serialisable: it is stored as the asset event's extra.
    """
    value: bytes | None = message.value()
    key: bytes | None = message.key()
    _kind, timestamp = message.timestamp()
    payload: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": timestamp,
        "key": base64.b64encode(key).decode() if key is not None else None,
        "value": base64.b64encode(value).decode() if value is not None else None,
    }
    try:
        login = decode_as(value or b"", UserLogin)
        payload["user_id"] = login.user_id
        payload["event_id"] = str(login.event_id)
    except EventError as error:
        payload["error"] = str(error)
    return payload


def encoded_events(payloads: Iterable[bytes | str]) -> Iterator[tuple[bytes | None, bytes]]:
    """producer_function for the provider's `ProduceToTopicOperator`: yields (key, value)
    of validated events, keyed by each event's partition key. Prefer
    `StarlingProduceOperator`, which also fails the task on undelivered messages."""
    from starling.events import decode

    for payload in payloads:
        raw = payload.encode() if isinstance(payload, str) else payload
        event = decode(raw)
        yield event.partition_key(), raw
