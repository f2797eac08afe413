"""The acknowledging producer shuts its client down on close, not at garbage collection."""

from __future__ import annotations

import asyncio

import pytest

from starling.web.producer import AckingProducer, NotAcknowledgedError

pytestmark = pytest.mark.unit


def test_close_stops_polling_and_closes_the_client() -> None:
    # Nothing listens there: librdkafka would keep reconnecting until the client is closed.
    producer = AckingProducer(
        {"bootstrap.servers": "127.0.0.1:1", "log_level": 0}, 1.0, probe_topic="t"
    )
    producer.start()
    producer.close(0.1)
    assert not producer._thread.is_alive()
    with pytest.raises(RuntimeError):
        producer._producer.poll(0)  # confluent-kafka refuses calls on a closed client
    assert not producer.reachable()
    with pytest.raises(NotAcknowledgedError, match="closed"):
        asyncio.run(producer.send("t", b"k", b"v"))
    producer.close(0.1)  # a second close is a no-op
