"""user_interaction_analysis under `dag.test()` against the real broker and store, checked
against a reference computed here from the generator's events."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from starling.events import ActivitySummary, decode_as
from starling.topics import ACTIVITY_SUMMARIES, INTERACTIONS
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


def reference_tweets(interactions: list[Any]) -> dict[int, float]:
    """Net weighted engagement per tweet, computed the plain way."""
    tweets: dict[int, float] = defaultdict(float)
    for event in interactions:
        if event.tweet_id is not None and event.action in TWEET_WEIGHTS:
            tweets[event.tweet_id] += TWEET_WEIGHTS[event.action]
    return dict(tweets)


def assert_summary_event_matches(event: ActivitySummary, interactions: list[Any]) -> None:
    users, totals = reference(interactions)
    tweets = reference_tweets(interactions)
    assert (event.interval_start, event.interval_end) == (INTERVAL_START, INTERVAL_END)
    assert event.event_time == INTERVAL_END
    assert event.interactions == len(interactions)
    assert event.invalid_records == 3
    assert {f"action.{a.value}": n for a, n in event.actions.items()} == totals
    assert event.active_users == len({e.actor_id for e in interactions})
    assert event.users_engaged == sum(
        1 for fields in users.values() if fields.get("engagement_received", 0) > 0
    )
    assert event.engaged_tweets == sum(1 for score in tweets.values() if score > 0)
    # Weights are whole numbers, so sums are exact whatever the order of addition.
    assert event.engagement_total == sum(tweets.values())
    ranked = sorted(
        ((tweet, score) for tweet, score in tweets.items() if score > 0),
        key=lambda item: (-item[1], item[0]),
    )[:100]
    assert ranked, "the traffic engages with some tweets"
    assert [(t.tweet_id, t.score) for t in event.top_tweets] == ranked


def test_interval_metrics_match_reference_and_rerun_replaces(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    traffic = make_traffic()
    produce_traffic(starling_env["bootstrap"], starling_env["prefix"], traffic)
    dag = load_dag("user_interaction_analysis.py")
    assert f"`{ACTIVITY_SUMMARIES}`" in dag.doc_md  # the docs name the topic it writes

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

    # Exactly one summary event, agreeing with the reference and with the stored summary.
    summaries_topic = starling_env["prefix"] + ACTIVITY_SUMMARIES
    (record,) = read_topic(starling_env["bootstrap"], summaries_topic)
    assert record.value is not None
    event = decode_as(record.value, ActivitySummary)
    assert_summary_event_matches(event, expected_events)
    assert record.key == event.partition_key()
    assert record.timestamp_ms == int(INTERVAL_END.timestamp() * 1000)
    assert event.interactions == int(summary["events"])
    assert event.engagement_total == float(summary["engagement_total"])

    # A re-run of the same interval reads the same records and replaces, not adds.
    redis_client.hset(f"{base}:summary", "events", "0")
    rerun = dag.test(logical_date=INTERVAL_END)
    assert rerun.state == "success"
    assert sorted(redis_client.keys(f"{base}:*")) == keys_after_first
    assert int(_decoded(redis_client.hgetall(f"{base}:summary"))["events"]) == len(expected_events)
    # ... and sends the same summary again, id included, so consumers dedupe it.
    first, again = read_topic(starling_env["bootstrap"], summaries_topic)
    assert first == record
    assert again.value is not None
    assert decode_as(again.value, ActivitySummary).event_id == event.event_id
    assert (again.key, again.value) == (record.key, record.value)
