"""A backlog replayed late lands in the intervals its events belong to.

Producers stamp each record with its event time, and the interval DAGs select records by
that timestamp. Here the newer hour's events are written first (what was live), then the
older hour's backlog (a consumer catching up, a replay): on record timestamps that is out
of order within every partition. Each DAG, run for each hour, must still agree with the
reference computed per hour from the events themselves.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from starling.events import ActivitySummary, decode_as
from starling.topics import ACTIVITY_SUMMARIES, INTERACTIONS, TWEETS_ENRICHED
from starling_operators import kafka as kafka_helpers
from starling_operators.records import event_message
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import INTERVAL_START, make_traffic, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = timedelta(hours=1)
# Traffic runs 09:40 to 11:53 (1 event/s): two whole-ish hours to check.
INTERVALS = [
    (INTERVAL_START, INTERVAL_START + HOUR),
    (INTERVAL_START + HOUR, INTERVAL_START + 2 * HOUR),
]
LIVE_FROM = INTERVALS[1][0]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def test_a_late_backlog_is_counted_in_its_own_intervals(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    traffic = make_traffic(seed=5, count=8000)
    config = {"bootstrap.servers": starling_env["bootstrap"]}
    prefix = starling_env["prefix"]
    for topic, events in (
        (INTERACTIONS, traffic.interactions),
        (TWEETS_ENRICHED, traffic.enriched),
    ):
        live = [event_message(e) for e in events if e.event_time >= LIVE_FROM]
        backlog = [event_message(e) for e in events if e.event_time < LIVE_FROM]
        assert live and backlog
        kafka_helpers.produce_all(config, prefix + topic, live, timeout=60)
        kafka_helpers.produce_all(config, prefix + topic, backlog, timeout=60)

    interactions_dag = load_dag("user_interaction_analysis.py")
    cleaning_dag = load_dag("data_cleaning_sentiment.py")
    vader = SentimentIntensityAnalyzer()
    for start, end in INTERVALS:
        assert interactions_dag.test(logical_date=end).state == "success"
        assert cleaning_dag.test(logical_date=end).state == "success"

        def inside(moment: datetime, start: datetime = start, end: datetime = end) -> bool:
            return start <= moment < end

        expected = [e for e in traffic.interactions if inside(e.event_time)]
        assert expected
        base = f"starling:airflow:activity:{stamp(start)}-{stamp(end)}"
        summary = {
            k.decode(): v.decode() for k, v in redis_client.hgetall(f"{base}:summary").items()
        }
        assert int(summary["events"]) == len(expected), (start, summary)
        totals = Counter(f"action.{e.action.value}" for e in expected)
        for name, count in totals.items():
            assert int(summary[name]) == count, (start, name)
        assert int(summary["active_users"]) == len({e.actor_id for e in expected})

        tweets = [t for t in traffic.enriched if inside(t.event_time)]
        assert tweets
        scores = [vader.polarity_scores(t.text)["compound"] for t in tweets]
        base = f"starling:airflow:tweets:{stamp(start)}-{stamp(end)}"
        summary = {
            k.decode(): v.decode() for k, v in redis_client.hgetall(f"{base}:summary").items()
        }
        assert int(summary["tweets"]) == len(tweets), (start, summary)
        assert float(summary["sentiment_mean"]) == pytest.approx(sum(scores) / len(tweets))

    # One summary event per hour, each stamped with its interval's end.
    summaries = read_topic(starling_env["bootstrap"], prefix + ACTIVITY_SUMMARIES)
    by_interval = {}
    for record in summaries:
        assert record.value is not None
        event = decode_as(record.value, ActivitySummary)
        by_interval[(event.interval_start, event.interval_end)] = (event, record.timestamp_ms)
    assert sorted(by_interval) == INTERVALS
    for (start, end), (event, timestamp_ms) in by_interval.items():
        assert timestamp_ms == int(end.timestamp() * 1000)
        assert event.interactions == sum(
            1 for e in traffic.interactions if start <= e.event_time < end
        )
