"""
### login_events

Event-driven: the asset watcher's `KafkaMessageQueueTrigger` (in the triggerer) consumes
`user.logins` and fires the `user_logins` asset for every login, carrying the record in the
asset event. Each run judges its logins against the user's history in the store: a
successful login from a country never seen before, or the 5th failure within 10 minutes,
becomes an `account_activity` notification on `notifications`; every successful login
refreshes that user's recommendations (graph from the store, tweet candidates from the
recommendations DAG's snapshot). Invalid records go to `user.logins.dlq`. Verdicts are
saved per login event id, so a re-run sends the same notification id again, never a new one.

A run can also be started with conf `{"payloads": [...]}` (the watcher's payload format,
`starling_operators.functions.login_message_payload`) to re-process given records.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

from starling.topics import CATALOG, LOGINS
from starling_operators.callbacks import PublishTaskFailure

# The watcher's topic is fixed when the file is parsed; tests sharing one broker prefix it.
LOGINS_TOPIC = os.environ.get("STARLING_TOPIC_PREFIX", "") + LOGINS

user_logins = Asset(
    name="user_logins",
    uri=f"kafka://starling/{LOGINS_TOPIC}",
    watchers=[
        AssetWatcher(
            name="user_logins_watcher",
            trigger=KafkaMessageQueueTrigger(
                topics=[LOGINS_TOPIC],
                apply_function="starling_operators.functions.login_message_payload",
                kafka_config_id="kafka_default",
                poll_timeout=1,
                poll_interval=1,
            ),
        )
    ],
)

with DAG(
    dag_id="login_events",
    description="Flag suspicious logins, refresh the user's recommendations",
    doc_md=__doc__,
    schedule=[user_logins],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # Verdicts depend on history written by earlier logins: judge them in order.
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    tags=["starling", "kafka", "event-driven", "security"],
    default_args={
        "owner": "starling",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=5),
        "on_failure_callback": PublishTaskFailure(CATALOG.get(LOGINS).dlq_name),
    },
) as dag:

    @task
    def handle_logins(triggering_asset_events: Any = None, dag_run: Any = None) -> Any:
        from starling_operators.tasks.logins import handle_logins, payloads_from_asset_events

        conf = (dag_run.conf if dag_run is not None else None) or {}
        payloads = list(conf.get("payloads", []))
        if triggering_asset_events:
            for events in triggering_asset_events.values():
                payloads += payloads_from_asset_events(events)
        return handle_logins(payloads)

    handle_logins()
