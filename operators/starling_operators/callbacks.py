"""Failure callbacks: a failed task leaves a record on a Kafka topic, so failures are
visible where operators already watch dead letters, not only in task logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starling_operators import settings

if TYPE_CHECKING:
    from starling_operators.kafka import OutgoingMessage

log = logging.getLogger(__name__)

# A failure callback runs after the task already failed; it must not hang the worker when
# the failure *is* the broker being down.
CALLBACK_TIMEOUT_S = 5.0


class PublishTaskFailure:
    """`on_failure_callback` that publishes a JSON record describing the failed task to
    `topic` (a catalog topic name; the DLQ of what the task reads, which the `airflow`
    principal may write). Never raises: a callback error would only hide the task's own."""

    def __init__(self, topic: str, kafka_config_id: str = settings.KAFKA_CONN_ID) -> None:
        self.topic = topic
        self.kafka_config_id = kafka_config_id

    def __call__(self, context: Any) -> None:
        # Imported here: DAG files reference this class at parse time, Kafka is only needed
        # when a task actually failed.
        from starling_operators import kafka
        from starling_operators.connection import kafka_config

        try:
            message = failure_message(context)

            kafka.produce_all(
                kafka_config(self.kafka_config_id),
                settings.topic(self.topic),
                [message],
                timeout=CALLBACK_TIMEOUT_S,
            )
        except Exception as exc:
            log.error("could not publish the failure record to %s: %s", self.topic, exc)


def failure_message(context: Any) -> OutgoingMessage:
    import msgspec

    from starling_operators.kafka import OutgoingMessage

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    exception = context.get("exception")
    error = f"{type(exception).__name__}: {exception}" if exception else "unknown"
    record = {
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": error,
        "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    headers = (
        ("starling.error.kind", b"task_failed"),
        ("starling.error.message", error[:1000].encode()),
        ("starling.service", f"{settings.SERVICE_NAME}:{dag_id}.{task_id}".encode()),
    )
    return OutgoingMessage(
        key=f"{dag_id}.{task_id}".encode(), value=msgspec.json.encode(record), headers=headers
    )
