"""
### recommendations

Every hour, for each user active in the hour: who to follow (friends of friends, each
followee's vote weighted by 1 / log(2 + its out-degree), without accounts already
followed, blocked or muted) and tweets (engagement-weighted, reply >> retweet > like,
decayed with a 6 h half-life, from accounts the user does not follow, boosted by followees
who engaged). Engagement comes from the last day of `user.interactions` and
`tweets.enriched`; the graph from the store (`g:following:*`, kept by the notifier).
`Recommendation` events go to `recommendations` with ids derived from the interval, so a
re-run emits the same ids. The tweet candidates are kept in the store for the login DAG.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, task

from starling.topics import CATALOG, INTERACTIONS
from starling_operators.callbacks import PublishTaskFailure

with DAG(
    dag_id="recommendations",
    description="Who-to-follow and tweet recommendations for active users",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    tags=["starling", "kafka", "recommendations"],
    params={"lookback_hours": 24},
    default_args={
        "owner": "starling",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": PublishTaskFailure(CATALOG.get(INTERACTIONS).dlq_name),
    },
) as dag:

    @task
    def recommend(
        params: Any = None, data_interval_start: Any = None, data_interval_end: Any = None
    ) -> Any:
        from starling_operators.tasks.recommendations import recommend_for_interval

        lookback = timedelta(hours=float(params["lookback_hours"]))
        return recommend_for_interval(data_interval_start, data_interval_end, lookback)

    recommend()
