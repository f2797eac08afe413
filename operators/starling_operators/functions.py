"""Callables the Kafka provider loads by dotted path (`apply_function`,
`producer_function`): they must be importable in the triggerer and workers, so they live in
this installed package, never in `dags/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def encoded_events(payloads: Iterable[bytes | str]) -> Iterator[tuple[bytes | None, bytes]]:
    """producer_function for the provider's `ProduceToTopicOperator`: yields (key, value)
    of validated events, keyed by each event's partition key. Prefer
    `StarlingProduceOperator`, which also fails the task on undelivered messages."""
    from starling.events import decode

    for payload in payloads:
        raw = payload.encode() if isinstance(payload, str) else payload
        event = decode(raw)
        yield event.partition_key(), raw
