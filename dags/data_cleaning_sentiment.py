"""
### data_cleaning_sentiment

Every hour, once ingestion has caught up on `tweets` (consumer-lag sensor on its group),
re-reads the hour's `tweets.enriched`: malformed records go to `tweets.enriched.dlq` with
the error in headers; valid tweets are re-scored with the VADER lexicon, their hashtags
case-folded and de-duplicated, and the interval's aggregates stored under
`starling:airflow:tweets:<interval>:*` (summary, hashtag counts, mean sentiment per hashtag,
tweets whose stored sentiment disagrees with the re-score). A re-run replaces them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, task

from starling.topics import CATALOG, TWEETS, TWEETS_ENRICHED
from starling_operators.callbacks import PublishTaskFailure
from starling_operators.operators import ConsumerLagSensor

with DAG(
    dag_id="data_cleaning_sentiment",
    description="Clean enriched tweets, re-score sentiment, hashtag/sentiment aggregates",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    tags=["starling", "kafka", "sentiment", "data-quality"],
    default_args={
        "owner": "starling",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=20),
        "on_failure_callback": PublishTaskFailure(CATALOG.get(TWEETS_ENRICHED).dlq_name),
    },
) as dag:
    ingestion_caught_up = ConsumerLagSensor(
        task_id="ingestion_caught_up",
        group_id="starling-ingestion",
        topics=[TWEETS],
        max_lag=1000,
        poke_interval=30,
        timeout=timedelta(minutes=15).total_seconds(),
        mode="reschedule",
    )

    @task
    def clean_and_score(data_interval_start: Any = None, data_interval_end: Any = None) -> Any:
        from starling_operators.tasks.tweets import clean_and_score

        return clean_and_score(data_interval_start, data_interval_end)

    ingestion_caught_up >> clean_and_score()
