"""The notifier against a real broker, Redis and a real local HTTP push gateway: dedupe,
preferences, blocks and mutes kept from interactions, fatigue cap, push with retries and
receipts; plus the runtime's health and metrics endpoints."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from starling.events import (
    InteractionAction,
    Notification,
    NotificationKind,
    UserInteraction,
    encode,
    new_event,
)
from starling.services.notifier import NotifierHandler, NotifierSettings, delivery_id
from starling.store.notifications import NotificationStore
from starling.topics import INTERACTIONS, NOTIFICATIONS
from tests.integration.services.helpers import Deployment, ThreadedRuntime, new_prefix, wait_for

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration


class PushGateway:
    """A local HTTP server that records pushes and fails the first `failures` with 503."""

    def __init__(self, failures: int) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.failures = failures
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if gateway.failures > 0:
                    gateway.failures -= 1
                    self.send_response(503)
                else:
                    gateway.received.append((self.headers["Idempotency-Key"], body))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/push"


@pytest.fixture
def gateway() -> Iterator[PushGateway]:
    gateway = PushGateway(failures=2)
    gateway.thread.start()
    yield gateway
    gateway.server.shutdown()
    gateway.server.server_close()


def test_notifier_filters_caps_dedupes_pushes_and_serves_probes(
    kafka: KafkaCluster,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    gateway: PushGateway,
) -> None:
    from confluent_kafka import Producer

    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    store = NotificationStore(redis_client, fatigue_cap=3, fatigue_window_s=3600)
    store.set_preference(30, "like", enabled=False)

    def mention(recipient: int, actor: int, source: uuid.UUID | None = None) -> Notification:
        return new_event(
            Notification,
            recipient_id=recipient,
            kind=NotificationKind.MENTION,
            source_event_id=source or uuid.uuid4(),
            actor_id=actor,
            tweet_id=1,
        )

    def interaction(actor: int, action: InteractionAction, target: int) -> UserInteraction:
        tweet = 1 if action is InteractionAction.LIKE else None
        return new_event(
            UserInteraction, actor_id=actor, action=action, target_user_id=target, tweet_id=tweet
        )

    repeated = uuid.uuid4()
    # Interactions first (user 10 blocks 11, mutes 12), then candidates for user 10.
    interactions = [
        interaction(10, InteractionAction.BLOCK, 11),
        interaction(10, InteractionAction.MUTE, 12),
        interaction(13, InteractionAction.FOLLOW, 10),  # delivered (follow)
        interaction(14, InteractionAction.LIKE, 30),  # user 30 opted out of likes
    ]
    candidates = [
        mention(10, 11),  # blocked
        mention(10, 12),  # muted
        mention(20, 21, repeated),
        mention(20, 21, repeated),  # the same cause again: one notification
        *[mention(40, 41) for _ in range(5)],  # fatigue cap 3
    ]
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event in interactions:
        producer.produce(deployment.topic(INTERACTIONS), encode(event), event.partition_key())
    assert producer.flush(10) == 0
    settings = deployment.settings("notifier")
    handler = NotifierHandler(
        settings,
        settings=NotifierSettings(fatigue_cap=3, push_url=gateway.url, push_attempts=3),  # type: ignore[arg-type]
    )
    runtime = ThreadedRuntime(settings, handler).start()
    try:
        wait_for(lambda: store.inbox_size(10) == 1, 30, "the follow notification")
        for candidate in candidates:
            producer.produce(
                deployment.topic(NOTIFICATIONS), encode(candidate), candidate.partition_key()
            )
        assert producer.flush(10) == 0
        wait_for(lambda: sum(handler.decisions.values()) >= 10, 30, "every candidate decided")

        port = runtime.runtime.metrics_port
        assert port
        probes = {
            path: httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            for path in ("/healthz", "/readyz", "/metrics")
        }
    finally:
        runtime.stop()

    assert [e.kind for e in store.inbox(10)] == ["follow"]
    assert store.inbox_size(20) == 1
    assert store.inbox_size(40) == 3
    assert store.inbox_size(30) == 0
    assert handler.decisions["filtered:blocked"] == 1
    assert handler.decisions["filtered:muted"] == 1
    assert handler.decisions["filtered:preference"] == 1
    assert handler.decisions["capped"] == 2

    # Push: five deliveries, the first two attempts refused with 503 and retried.
    keys = {key for key, _body in gateway.received}
    assert len(gateway.received) == len(keys) == 5
    repeated_id = delivery_id(20, NotificationKind.MENTION, repeated)
    assert repeated_id in keys
    receipt = store.receipt(repeated_id)
    assert receipt["inapp"].startswith("delivered")
    assert receipt["push"].startswith("pushed")
    assert store.status(20, repeated_id) == "pushed"

    assert probes["/healthz"].status_code == 200
    assert probes["/readyz"].status_code == 200
    metrics = probes["/metrics"].text
    assert "starling_messages_processed_total" in metrics
    assert "starling_batch_duration_seconds_bucket" in metrics
