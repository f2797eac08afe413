"""Prometheus metrics and the HTTP endpoint that serves them with the health probes.

One registry per runtime (not the global one), so several runtimes can share a test
process. Counters are incremented once per batch, by the batch's count: per-message
metric updates would cost more than the no-op handler they measure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from starling.runtime.config import ConfigError

# Batch latency buckets (seconds): a batch normally takes a few ms; retries take seconds.
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


class RuntimeMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = ("service", "topic")
        self.consumed = Counter(
            "starling_messages_consumed",
            "messages taken from Kafka",
            labels,
            registry=self.registry,
        )
        self.processed = Counter(
            "starling_messages_processed",
            "messages whose effects are durable and outputs acknowledged; their offsets are"
            " then committed (asynchronously; failures in starling_commit_failures_total)",
            labels,
            registry=self.registry,
        )
        self.failed = Counter(
            "starling_messages_failed",
            "messages that failed validation or processing",
            (*labels, "kind"),
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "starling_messages_dead_lettered",
            "messages routed to the dead-letter topic",
            labels,
            registry=self.registry,
        )
        self.retries = Counter(
            "starling_batch_retries",
            "batch attempts that hit a transient fault and were retried",
            ("service",),
            registry=self.registry,
        )
        self.commit_failures = Counter(
            "starling_commit_failures",
            "offset commits that failed, synchronous or asynchronous (the offsets stay due"
            " and go with the next commit)",
            ("service",),
            registry=self.registry,
        )
        self.produced = Counter(
            "starling_messages_produced",
            "messages produced and acknowledged by the brokers",
            labels,
            registry=self.registry,
        )
        self.lag = Gauge(
            "starling_consumer_lag",
            "messages between the committed offset and the partition's end",
            ("service", "topic", "partition"),
            registry=self.registry,
        )
        self.assigned = Gauge(
            "starling_assigned_partitions",
            "partitions currently assigned to this consumer",
            ("service",),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "starling_batch_duration_seconds",
            "time from a batch's arrival to its offsets' commit being sent",
            ("service",),
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.service = service
        self._per_topic: dict[tuple[str, str], Any] = {}

    def for_topic(self, counter: Counter, topic: str) -> Any:
        """The labelled child, cached: `labels()` costs a dict build and a lock per call."""
        key = (counter._name, topic)
        child = self._per_topic.get(key)
        if child is None:
            child = self._per_topic[key] = counter.labels(self.service, topic)
        return child


class HealthState:
    """What the probes report. The loop `beat()`s every iteration; readiness also needs a
    group assignment (possibly empty: a spare replica is still healthy) and a store check."""

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self.last_beat = time.monotonic()
        self.joined = False
        self.stopping = False
        self.store_check: Callable[[], bool] = lambda: True

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.stall_after_s

    def ready(self) -> bool:
        if self.stopping or not self.joined or not self.alive():
            return False
        try:
            return self.store_check()
        except Exception:
            return False


def port_taken_message(variable: str, port: int, error: OSError) -> str:
    """One line for a port this process cannot listen on (another service holds it)."""
    return (
        f"{variable}={port}: cannot listen on port {port} ({error.strerror or error});"
        f" another process holds it: set {variable} to a free port (0 picks one)"
    )


class MetricsServer:
    """`/metrics`, `/healthz` (the loop is alive) and `/readyz` on one port, in a thread."""

    def __init__(self, port: int, registry: CollectorRegistry, health: HealthState) -> None:
        handler = _make_handler(registry, health)
        try:
            self._server = ThreadingHTTPServer(("0.0.0.0", port), handler)
        except OSError as error:
            raise ConfigError(port_taken_message("METRICS_PORT", port, error)) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(registry: CollectorRegistry, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif path == "/readyz":
                ok = health.ready()
                self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every few seconds would flood the service log.
            return

    return Handler
