"""Shared plumbing for the service tests: topics under a unique prefix, settings and
environments for a service, runtimes in threads, reading topics back."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starling.runtime.config import RuntimeSettings
from starling.runtime.consumer import ConsumerRuntime
from starling.runtime.handler import Handler
from starling.topics import CATALOG

if TYPE_CHECKING:
    from starling.harness.kafka import KafkaCluster


@dataclass
class Deployment:
    """One test's topics (catalog names under `prefix`) and where the store is."""

    kafka: KafkaCluster
    prefix: str
    store_host: str
    store_port: int
    brokers: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def settings(self, service: str, **overrides: Any) -> RuntimeSettings:
        values: dict[str, Any] = {
            "starling_service": service,
            "kafka_bootstrap_servers": self.kafka.bootstrap_servers,
            "kafka_group_id": f"starling-{service}-{self.prefix.rstrip('.')}",
            "kafka_session_timeout_ms": 6000,
            "store_host": self.store_host,
            "store_port": self.store_port,
            "metrics_port": 0,
            "starling_topic_prefix": self.prefix,
            "starling_retry_budget_s": 30.0,
            **self.overrides,
            **overrides,
        }
        return RuntimeSettings(**values)

    def env(self, service: str, **extra: str) -> dict[str, str]:
        """Environment for `starling run <service>` as a separate process."""
        settings = self.settings(service)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KAFKA_", "STORE_", "STARLING_"))
        }
        env.update(
            {
                "STARLING_SERVICE": service,
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "KAFKA_GROUP_ID": settings.group_id,
                "KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
                "STORE_HOST": self.store_host,
                "STORE_PORT": str(self.store_port),
                "METRICS_PORT": "0",
                "STARLING_TOPIC_PREFIX": self.prefix,
                "STARLING_RETRY_BUDGET_S": "30",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def create_topics(self) -> None:
        catalog = CATALOG.for_cluster(self.brokers)
        self.kafka.create_topics(
            (
                self.prefix + spec.name,
                spec.partitions,
                spec.replicas,
                # Records carry their event time as timestamp, and test traffic is often
                # in simulated past time: keep it forever, or retention deletes it mid-test.
                {**spec.kafka_config(), "retention.ms": "-1"},
            )
            for spec in catalog.all_topics()
        )


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


class ThreadedRuntime:
    """A ConsumerRuntime running in a background thread."""

    def __init__(self, settings: RuntimeSettings, handler: Handler, **options: Any) -> None:
        self.runtime = ConsumerRuntime(settings, handler, **options)
        self.handler = handler
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"runtime-{settings.starling_service}"
        )

    def _run(self) -> None:
        try:
            self.runtime.run()
        except BaseException as error:
            self.error = error

    def start(self) -> ThreadedRuntime:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.runtime.request_stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "runtime did not stop in time"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_topic(
    kafka: KafkaCluster, topic: str, expected: int | None = None, timeout: float = 60.0
) -> list[Any]:
    """Every message of `topic` from the start: until `expected` arrived (plus a short
    quiet period to catch extras), or until 2 s pass without any."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    last_arrival = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=5000, timeout=0.3)
            for message in batch:
                if message.error() is None:
                    messages.append(message)
            now = time.monotonic()
            if batch:
                last_arrival = now
            quiet = now - last_arrival
            if expected is not None and len(messages) >= expected and quiet > 0.6:
                break
            if expected is None and quiet > 2.0:
                break
    finally:
        consumer.close()
    return messages


def service_command(service: str) -> list[str]:
    return [sys.executable, "-m", "starling.run_cli", service]
