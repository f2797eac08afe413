"""user_interaction_analysis under `dag.test()` against the real broker and store, checked
against a reference computed here from the generator's events."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from starling.topics import INTERACTIONS
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import (
    INTERVAL_END,
    INTERVAL_START,
    TWEET_WEIGHTS,
    in_interval,
    make_traffic,
    produce_traffic,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _decoded(mapping: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in mapping.items()}


def reference(interactions: list[Any]) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """Per-user counts and engagement, and interval totals, computed the plain way."""
    users: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: Counter[str] = Counter()
    for event in interactions:
        action = event.action.value
        totals[f"action.{action}"] += 1
        users[event.actor_id][f"did.{action}"] += 1
        users[event.target_user_id][f"got.{action}"] += 1
        if event.tweet_id is not None and event.action in TWEET_WEIGHTS:
            users[event.actor_id]["engagement_given"] += TWEET_WEIGHTS[event.action]
            users[event.target_user_id]["engagement_received"] += TWEET_WEIGHTS[event.action]
    return users, dict(totals)


def test_interval_metrics_match_reference_and_rerun_replaces(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    traffic = make_traffic()
    produce_traffic(starling_env["bootstrap"], starling_env["prefix"], traffic)
    dag = load_dag("user_interaction_analysis.py")

    run = dag.test(logical_date=INTERVAL_END)
    assert run.state == "success"
    assert (run.data_interval_start, run.data_interval_end) == (INTERVAL_START, INTERVAL_END)

    expected_events = [e for e in traffic.interactions if in_interval(e.event_time)]
    assert 0 < len(expected_events) < len(traffic.interactions)  # the interval cuts the stream
    users, totals = reference(expected_events)
    base = "starling:airflow:activity:20260302T100000Z-20260302T110000Z"
    summary = _decoded(redis_client.hgetall(f"{base}:summary"))
    assert int(summary["events"]) == len(expected_events)
    assert int(summary["invalid"]) == 3
    for name, count in totals.items():
        assert int(summary[name]) == count, name
    assert int(summary["active_users"]) == len({e.actor_id for e in expected_events})

    for user, fields in users.items():
        stored = _decoded(redis_client.hgetall(f"{base}:user:{user}"))
        for name, value in fields.items():
            assert float(stored[name]) == pytest.approx(value), (user, name)
    keys_after_first = sorted(redis_client.keys(f"{base}:*"))

    # The malformed records went to the DLQ with the error in headers.
    dead = read_topic(starling_env["bootstrap"], starling_env["prefix"] + INTERACTIONS + ".dlq")
    assert len(dead) == 3
    headers = dict(dead[0].headers)
    assert headers["starling.error.kind"] in {b"malformed", b"invalid"}
    assert headers["starling.service"] == b"airflow:interaction-analysis"

    # A re-run of the same interval reads the same records and replaces, not adds.
    redis_client.hset(f"{base}:summary", "events", "0")
    rerun = dag.test(logical_date=INTERVAL_END)
    assert rerun.state == "success"
    assert sorted(redis_client.keys(f"{base}:*")) == keys_after_first
    assert int(_decoded(redis_client.hgetall(f"{base}:summary"))["events"]) == len(expected_events)
