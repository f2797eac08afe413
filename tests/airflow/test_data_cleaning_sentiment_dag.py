"""data_cleaning_sentiment under `dag.test()`: aggregates equal a reference computed here with
the VADER lexicon directly; malformed records end in the DLQ."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from starling.topics import TWEETS_ENRICHED
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import (
    INTERVAL_END,
    in_interval,
    make_traffic,
    produce_traffic,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_aggregates_match_lexicon_reference(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    traffic = make_traffic(seed=3)
    produce_traffic(starling_env["bootstrap"], starling_env["prefix"], traffic)

    run = load_dag("data_cleaning_sentiment.py").test(logical_date=INTERVAL_END)
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "ingestion_caught_up": "success",
        "clean_and_score": "success",
    }

    vader = SentimentIntensityAnalyzer()
    tweets = [t for t in traffic.enriched if in_interval(t.event_time)]
    scores = {t.tweet_id: vader.polarity_scores(t.text)["compound"] for t in tweets}
    tags: Counter[str] = Counter()
    tag_sum: dict[str, float] = defaultdict(float)
    for tweet in tweets:
        for tag in dict.fromkeys(h.lower() for h in tweet.hashtags):
            tags[tag] += 1
            tag_sum[tag] += scores[tweet.tweet_id]
    drift = {t.tweet_id for t in tweets if abs(scores[t.tweet_id] - t.sentiment) > 0.25}
    assert drift  # the generator stored some wrong scores on purpose

    base = "starling:airflow:tweets:20260302T100000Z-20260302T110000Z"
    summary = {k.decode(): v.decode() for k, v in redis_client.hgetall(f"{base}:summary").items()}
    assert int(summary["tweets"]) == len(tweets)
    assert int(summary["invalid"]) == 3
    assert float(summary["sentiment_mean"]) == pytest.approx(sum(scores.values()) / len(tweets))
    assert int(summary["positive"]) == sum(1 for s in scores.values() if s >= 0.05)
    assert int(summary["negative"]) == sum(1 for s in scores.values() if s <= -0.05)
    stored_tags = {
        k.decode(): v for k, v in redis_client.zrange(f"{base}:hashtags", 0, -1, withscores=True)
    }
    assert stored_tags == {tag: float(n) for tag, n in tags.items()}
    stored_means = redis_client.hgetall(f"{base}:hashtag_sentiment")
    for tag, count in tags.items():
        assert float(stored_means[tag.encode()]) == pytest.approx(tag_sum[tag] / count)
    stored_drift = {int(k) for k in redis_client.hkeys(f"{base}:sentiment_drift")}
    assert stored_drift == drift

    dead = read_topic(starling_env["bootstrap"], starling_env["prefix"] + TWEETS_ENRICHED + ".dlq")
    assert sorted(r.value for r in dead) == sorted(traffic.malformed[TWEETS_ENRICHED])
