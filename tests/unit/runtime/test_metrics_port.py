"""A service says where its metrics and probes are: with METRICS_PORT=0 (several services
on one machine) the bound port is logged at start, and it is the port that answers."""

from __future__ import annotations

import logging
import re
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest

from starling.runtime.config import RuntimeSettings
from starling.runtime.consumer import ConsumerRuntime
from starling.runtime.handler import BaseHandler

pytestmark = pytest.mark.unit


class IdleConsumer:
    """Joins with no partitions; on its first poll fetches /healthz from the logged port."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.runtime: ConsumerRuntime | None = None
        self.caplog: pytest.LogCaptureFixture | None = None
        self.probed: tuple[int, int] | None = None

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        callbacks["on_assign"](self, [])

    def consume(self, _count: int, _timeout: float) -> list[Any]:
        assert self.runtime is not None and self.caplog is not None
        logged = [
            int(found.group(1))
            for record in self.caplog.records
            if (found := re.search(r"metrics and health on :(\d+)$", record.getMessage()))
        ]
        port = logged[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            self.probed = (port, response.status)
        self.runtime.request_stop()
        return []

    def commit(self, **_kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


class QuietProducer:
    def __init__(self, _config: Mapping[str, Any]) -> None:
        pass

    def flush(self, _timeout: float) -> int:
        return 0


class Handler(BaseHandler):
    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {"tweets": bytes}

    def handle(self, records: Any, outbox: Any) -> None:
        return None


def test_the_bound_metrics_port_is_logged_and_serves_the_probes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumers: list[IdleConsumer] = []

    def consumer(config: dict[str, Any]) -> IdleConsumer:
        consumers.append(IdleConsumer(config))
        return consumers[-1]

    runtime = ConsumerRuntime(
        RuntimeSettings(
            starling_service="trends", kafka_bootstrap_servers="fake:9092", metrics_port=0
        ),
        Handler(),
        consumer_factory=consumer,
        producer_factory=QuietProducer,
    )
    consumers[0].runtime = runtime
    consumers[0].caplog = caplog
    with caplog.at_level(logging.INFO, logger="starling.runtime"):
        runtime.run()
    assert consumers[0].probed is not None
    port, status = consumers[0].probed
    assert port != 0
    assert port == runtime.metrics_port
    assert status == 200
    assert f"trends: metrics and health on :{port}" in caplog.messages
