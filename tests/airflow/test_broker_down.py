"""With the broker unreachable (a closed port on 127.0.0.1), every Kafka task fails within
30 s with a message naming the broker and the cause; no run reports success; nothing
hangs. (The provider's defaults hang for minutes or report success here.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from starling.harness.airflow import kafka_connection
from tests.airflow.conftest import load_dag

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT_S = 30.0
INTERVAL_END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


@pytest.fixture
def broker_down(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, redis_server: Any, airflow_db: Any
) -> str:
    bootstrap = f"127.0.0.1:{closed_port}"
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", kafka_connection(bootstrap))
    monkeypatch.setenv("AIRFLOW_CONN_STARLING_STORE", redis_server.url)
    monkeypatch.setenv("STARLING_TOPIC_PREFIX", "down.")
    return bootstrap


def _check_task_functions(bootstrap: str) -> list[tuple[str, float, str]]:
    from starling_operators.tasks.interactions import analyse_interactions
    from starling_operators.tasks.logins import handle_logins
    from starling_operators.tasks.recommendations import recommend_for_interval
    from starling_operators.tasks.tweets import clean_and_score

    start = INTERVAL_END - timedelta(hours=1)
    calls = {
        "analyse_interactions": lambda: analyse_interactions(start, INTERVAL_END),
        "recommend_for_interval": lambda: recommend_for_interval(start, INTERVAL_END),
        "clean_and_score": lambda: clean_and_score(start, INTERVAL_END),
        # An invalid record must go to the DLQ first: that needs the broker too.
        "handle_logins": lambda: handle_logins([{"value": "eyJ4IjoxfQ==", "offset": 1}]),
    }
    outcomes = []
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            call()
        outcomes.append((name, time.monotonic() - started, str(caught.value)))
    return outcomes


def test_task_functions_fail_fast_naming_broker_and_cause(broker_down: str) -> None:
    for name, seconds, message in _check_task_functions(broker_down):
        assert seconds < LIMIT_S, (name, seconds)
        assert broker_down in message, (name, message)
        assert "Connection refused" in message, (name, message)


@pytest.mark.parametrize(
    ("dag_file", "run_kwargs"),
    [
        ("user_interaction_analysis.py", {"logical_date": INTERVAL_END}),
        ("recommendations.py", {"logical_date": INTERVAL_END}),
        ("data_cleaning_sentiment.py", {"logical_date": INTERVAL_END}),
        ("login_events.py", {"run_conf": {"payloads": [{"value": "eyJ4IjoxfQ=="}]}}),
        ("starling_topics.py", {}),
    ],
)
def test_dag_runs_fail_within_limit(
    broker_down: str, dag_file: str, run_kwargs: dict[str, Any]
) -> None:
    dag = load_dag(dag_file)
    started = time.monotonic()
    run = dag.test(**run_kwargs)
    elapsed = time.monotonic() - started
    assert run.state == "failed"
    instances = run.get_task_instances()
    assert not any(ti.state == "success" for ti in instances)
    for ti in instances:
        if ti.start_date and ti.end_date:
            assert (ti.end_date - ti.start_date).total_seconds() < LIMIT_S, ti.task_id
    print(f"{dag_file}: run failed in {elapsed:.1f} s")
