"""Starling's Airflow operators and sensor.

Unlike the provider's `ProduceToTopicOperator` (which, with an unreachable broker, either
hangs for minutes per message or reports success with nothing delivered), these fail the
task within seconds, naming the broker and the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator, Context

from starling.topics import CATALOG
from starling_operators import settings

# Kafka clients are imported in `execute`/`poke`: DAG files construct these operators at
# parse time, when only the catalog check is needed.
DEFAULT_TIMEOUT_S = 20.0


def _as_bytes(payload: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    import msgspec

    return msgspec.json.encode(payload)


class StarlingProduceOperator(BaseOperator):
    """Produce events to a catalog topic: each payload is validated against the topic's
    schemas first (one bad payload fails the task before anything is sent), then produced
    with an idempotent producer; the task fails unless every message is acknowledged
    within `timeout` seconds.

    :param topic: catalog topic name (the deployment's prefix is added at run time).
    :param payloads: encoded events (JSON strings/bytes or dicts); templated, so an XCom
        of a previous task can be passed.
    """

    template_fields: Sequence[str] = ("payloads",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        topic: str,
        payloads: Any,
        kafka_config_id: str = settings.KAFKA_CONN_ID,
        timeout: float = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        CATALOG.get(topic)  # an unknown topic is a DAG bug: fail at parse time
        self.topic = topic
        self.payloads = payloads
        self.kafka_config_id = kafka_config_id
        self.timeout = timeout

    def execute(self, context: Context) -> int:
        from starling_operators.connection import kafka_config
        from starling_operators.publish import publish_events, validate_payloads

        payloads = self.payloads or []
        events = validate_payloads(self.topic, [_as_bytes(p) for p in payloads])
        report = publish_events(
            kafka_config(self.kafka_config_id), self.topic, events, self.timeout
        )
        return report.delivered


class EnsureTopicsOperator(BaseOperator):
    """Create catalog topics (and their DLQs) that do not exist yet; existing topics are
    left alone, so it is safe on every run. Replication follows the cluster size found in
    the metadata (`TopicCatalog.for_cluster`)."""

    def __init__(
        self,
        *,
        topics: Sequence[str] | None = None,
        kafka_config_id: str = settings.KAFKA_CONN_ID,
        timeout: float = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        known = CATALOG.names()
        unknown = sorted(set(topics or ()) - known)
        if unknown:
            raise ValueError(f"unknown catalog topics {unknown}; known: {sorted(known)}")
        self.topics = list(topics) if topics is not None else None
        self.kafka_config_id = kafka_config_id
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, list[str]]:
        from starling_operators import kafka
        from starling_operators.connection import kafka_config

        config = kafka_config(self.kafka_config_id)
        brokers = kafka.broker_count(config, timeout=min(self.timeout, 10.0))
        catalog = CATALOG.for_cluster(brokers)
        wanted = set(self.topics) if self.topics is not None else catalog.names()
        requests = [
            kafka.TopicRequest(
                settings.topic(spec.name), spec.partitions, spec.replicas, spec.kafka_config()
            )
            for spec in catalog.all_topics()
            if spec.name in wanted
        ]
        created, existing = kafka.ensure_topics(config, requests, self.timeout)
        self.log.info("topics created: %s; already there: %s", created, existing)
        return {"created": created, "existing": existing}


class ConsumerLagSensor(BaseSensorOperator):
    """Wait until consumer group `group_id` has at most `max_lag` unprocessed records on
    `topics` (e.g. until ingestion has caught up before a batch reads its output).

    An unreachable broker fails the poke with the broker and the cause; it is not
    mistaken for "still lagging"."""

    template_fields: Sequence[str] = ("group_id",)

    def __init__(
        self,
        *,
        group_id: str,
        topics: Sequence[str],
        max_lag: int = 0,
        kafka_config_id: str = settings.KAFKA_CONN_ID,
        request_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for topic in topics:
            CATALOG.get(topic)
        self.group_id = group_id
        self.topics = list(topics)
        self.max_lag = max_lag
        self.kafka_config_id = kafka_config_id
        self.request_timeout = request_timeout

    def poke(self, context: Context) -> bool:
        from starling_operators import kafka
        from starling_operators.connection import kafka_config

        lag = kafka.consumer_lag(
            kafka_config(self.kafka_config_id),
            self.group_id,
            [settings.topic(t) for t in self.topics],
            timeout=self.request_timeout,
        )
        total = sum(lag.values())
        self.log.info(
            "group %s lag on %s: %d (max %d)", self.group_id, self.topics, total, self.max_lag
        )
        return total <= self.max_lag
