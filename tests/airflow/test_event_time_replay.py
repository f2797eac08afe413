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

from starling.events import ActivitySummary, Recommendation, RecommendationKind, decode_as
from starling.topics import ACTIVITY_SUMMARIES, INTERACTIONS, RECOMMENDATIONS, TWEETS_ENRICHED
from starling_operators import kafka as kafka_helpers
from starling_operators.records import event_message
from tests.airflow import test_recommendations_dag as recommendations_reference
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import INTERVAL_START, Traffic, make_traffic, read_topic

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
    starling_env: dict[str, str], redis_client: Any, monkeypatch: pytest.MonkeyPatch
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

    check_recommendations(starling_env, redis_client, monkeypatch, traffic, *INTERVALS[0])


def check_recommendations(
    starling_env: dict[str, str],
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    traffic: Traffic,
    start: datetime,
    end: datetime,
) -> None:
    """Recommendations for the backlog's hour: from the events before its end only (the
    newer hour is on the topic too, written earlier), on the graph the store holds."""
    prefix = starling_env["prefix"]
    recommendations_reference.seed_store_graph(redis_client, traffic)
    assert load_dag("recommendations.py").test(logical_date=end).state == "success"
    produced = [
        decode_as(r.value or b"", Recommendation)
        for r in read_topic(starling_env["bootstrap"], prefix + RECOMMENDATIONS)
    ]
    by_key = {(r.user_id, r.kind): r for r in produced}
    following, hidden = recommendations_reference.reference_graph(traffic)
    before_end = Traffic(
        traffic.generator,
        [e for e in traffic.events if e.event_time < end],
        [t for t in traffic.enriched if t.event_time < end],
    )
    monkeypatch.setattr(recommendations_reference, "INTERVAL_END", end)
    tweet_reference = recommendations_reference.reference_tweets(before_end, following, hidden)
    active = {e.actor_id for e in traffic.interactions if start <= e.event_time < end}
    expected = {}
    for user in active:
        wtf = recommendations_reference.reference_who_to_follow(user, following, hidden[user])
        if wtf:
            expected[(user, RecommendationKind.WHO_TO_FOLLOW)] = wtf
        if tweet_reference[user]:
            expected[(user, RecommendationKind.TWEETS)] = tweet_reference[user]
    assert any(kind is RecommendationKind.TWEETS for _, kind in expected)
    assert set(by_key) == set(expected)
    for key, items in expected.items():
        got = by_key[key]
        assert got.event_time == end
        assert [i.item_id for i in got.items] == [item for item, _ in items], key
        assert [i.score for i in got.items] == pytest.approx([s for _, s in items]), key
