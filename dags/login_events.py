"""
### login_events

Event-driven: the asset watcher's `LoginStreamTrigger` (the provider's shared-stream
Kafka trigger, in the triggerer) consumes `user.logins` and fires the `user_logins` asset
for every valid login, carrying the record in the asset event; the offset is committed
only after that asset event is stored, so a triggerer crash cannot lose a login. Records
that are not logins are dead-lettered by the trigger to `user.logins.dlq` and start no run.

Each run judges its logins (`UserLogin` v1 from clients, or v2 from the identity service,
one per sign-in attempt) against the history in the store: a successful login from a
country never seen before, a burst of failed sign-ins on one account (5th failure within
10 minutes) or from one client address across accounts (20th within 10 minutes; every
account it tried is told) becomes an `account_activity` notification on `notifications`
(thresholds: `STARLING_LOGIN_FAILURES_PER_ACCOUNT`, `STARLING_LOGIN_FAILURES_PER_ADDRESS`,
`STARLING_LOGIN_FAILURE_WINDOW_S`). Every successful login of an existing account
refreshes that user's recommendations (graph from the store, tweet candidates from the
recommendations DAG's snapshot). Verdicts are saved per login event id, so a re-run sends
the same notification ids again, never new ones.

Airflow 3.3 can leave an asset event that arrives while a run is being created waiting
until the *next* login (and every event that arrives while the DAG is at
max_active_runs: apache/airflow#56050). So the DAG also runs every few minutes
(`STARLING_LOGIN_SWEEP_MINUTES`, default 5) and every run looks back over the last 30
minutes of the asset's events: a waiting login is handled by the next sweep at the latest.
Logins are marked handled in the store once published, so a login seen by several runs
is handled once; overlapping runs take turns on a store lock.

A run can also be started with conf `{"payloads": [...]}` (the watcher's payload format,
`starling_operators.triggers.login_trigger_payload`) to handle given records again.

The Kafka connection must set `enable.auto.commit=false` (the trigger refuses to start
otherwise): offsets are committed by the trigger, after the asset event is persisted.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    task,
)

from starling.topics import CATALOG, DLQ_SUFFIX, LOGINS
from starling_operators.callbacks import PublishTaskFailure
from starling_operators.triggers import LoginStreamTrigger

# The watcher's topic is fixed when the file is parsed; tests sharing one broker prefix it.
LOGINS_TOPIC = os.environ.get("STARLING_TOPIC_PREFIX", "") + LOGINS
# How often the sweep runs: the longest a login can wait for its run (see above).
SWEEP_MINUTES = int(os.environ.get("STARLING_LOGIN_SWEEP_MINUTES", "5"))
# How far each run looks back over the asset's events, and at most how many it reads.
LOOKBACK = timedelta(minutes=30)
LOOKBACK_LIMIT = 5000

user_logins = Asset(
    # Named after the topic (`user_logins` in a deployment): Airflow keeps one active asset
    # per name, so deployments sharing a metadata database under topic prefixes (tests on
    # one broker) must not share the name while their URIs differ.
    name=LOGINS_TOPIC.replace(".", "_"),
    uri=f"kafka://starling/{LOGINS_TOPIC}",
    watchers=[
        AssetWatcher(
            name="user_logins_watcher",
            trigger=LoginStreamTrigger(
                topics=[LOGINS_TOPIC],
                dlq_topic=LOGINS_TOPIC + DLQ_SUFFIX,
                kafka_config_id="kafka_default",
                poll_timeout=1,
            ),
        )
    ],
)

with DAG(
    dag_id="login_events",
    description="Flag suspicious logins and sign-in bursts, refresh the user's recommendations",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(f"*/{SWEEP_MINUTES} * * * *", timezone="UTC"),
        assets=[user_logins],
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # Not 1: at max_active_runs Airflow 3.3 leaves queued asset events waiting for the next
    # event (apache/airflow#56050). Overlapping runs judge under one store lock instead.
    max_active_runs=4,
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

    @task(inlets=[user_logins])
    def handle_logins(
        triggering_asset_events: Any = None, inlet_events: Any = None, dag_run: Any = None
    ) -> Any:
        from starling_operators.tasks.logins import handle_logins, payloads_from_asset_events

        conf = (dag_run.conf if dag_run is not None else None) or {}
        payloads = []
        for events in (triggering_asset_events or {}).values():
            payloads += payloads_from_asset_events(events)
        if inlet_events is not None:
            since = datetime.now(UTC) - LOOKBACK
            recent = inlet_events[user_logins].after(since).ascending(False).limit(LOOKBACK_LIMIT)
            payloads += payloads_from_asset_events(recent)
        return handle_logins(payloads, replay=conf.get("payloads", []))

    handle_logins()
