"""
### user_interaction_analysis

Every hour, reads the hour's `user.interactions` (selected by record timestamp with
`offsets_for_times`, so a re-run reads exactly the same records), computes per-user
activity (actions done and received, engagement given and received) and interval
aggregates (actions by type, active users, most engaged tweets), and stores them under
`starling:airflow:activity:<interval>:*` (a re-run replaces the interval's keys).
Once they are stored, one `ActivitySummary` event (totals by action, active users,
engagement, most engaged tweets) goes to `activity.summaries`, with an id derived from the
interval: a re-run sends the same event id, and consumers dedupe it. Invalid records go to
`user.interactions.dlq`. The consumer group `starling-airflow-interaction-analysis` is
advanced after the store write and the event, so lag dashboards show how far behind
Airflow is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, task

from starling.topics import CATALOG, INTERACTIONS
from starling_operators.callbacks import PublishTaskFailure

with DAG(
    dag_id="user_interaction_analysis",
    description="Per-user activity metrics and engagement aggregates per hour",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=45),
    tags=["starling", "kafka", "analytics"],
    default_args={
        "owner": "starling",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=20),
        "on_failure_callback": PublishTaskFailure(CATALOG.get(INTERACTIONS).dlq_name),
    },
) as dag:

    @task
    def analyse_interactions(data_interval_start: Any = None, data_interval_end: Any = None) -> Any:
        from starling_operators.tasks.interactions import analyse_interactions

        return analyse_interactions(data_interval_start, data_interval_end)

    analyse_interactions()
