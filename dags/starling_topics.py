"""
### starling_topics

Manual: create every catalog topic and DLQ that does not exist yet, with the catalog's
partitions and configs and replication scaled to the cluster. For development clusters and
the local broker; in Kubernetes the Strimzi topic operator owns topics (`KafkaTopic`), and
the `airflow` principal has no Create ACL there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from starling_operators.operators import EnsureTopicsOperator

with DAG(
    dag_id="starling_topics",
    description="Create missing catalog topics (development clusters)",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    dagrun_timeout=timedelta(minutes=5),
    tags=["starling", "kafka", "admin"],
    default_args={"owner": "starling", "retries": 1, "retry_delay": timedelta(seconds=10)},
) as dag:
    EnsureTopicsOperator(task_id="ensure_topics")
