"""data_cleaning_and_sentiment: re-score enriched tweets with the lexicon, dead-letter
malformed records, store per-interval hashtag and sentiment aggregates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starling.events import TweetEnriched
from starling.topics import TWEETS_ENRICHED
from starling_operators import sentiment, settings
from starling_operators.analytics import TweetAggregates
from starling_operators.connection import kafka_config, store_client
from starling_operators.store import IntervalWriter, interval_id
from starling_operators.tasks._common import as_utc, mark_done, read_events

PURPOSE = "tweet-cleaning"


def clean_and_score(
    start: datetime,
    end: datetime,
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    start, end = as_utc(start), as_utc(end)
    config = kafka_config(kafka_conn_id)
    events = read_events(config, TWEETS_ENRICHED, TweetEnriched, start, end, PURPOSE)
    aggregates = TweetAggregates()
    for tweet in events.decoded.events:
        aggregates.add(tweet, sentiment.score(tweet.text))

    client = store_client(store_conn_id)
    try:
        writer = IntervalWriter(client, "tweets", start, end)
        summary = {
            **aggregates.summary_fields(),
            "interval": interval_id(start, end),
            "invalid": str(len(events.decoded.dead_letters)),
        }
        writer.hash(writer.key("summary"), summary)
        writer.zset(
            writer.key("hashtags"),
            {tag: float(n) for tag, n in aggregates.hashtag_counts.items()},
        )
        writer.hash(
            writer.key("hashtag_sentiment"),
            {tag: repr(mean) for tag, mean in aggregates.hashtag_sentiment().items()},
        )
        writer.hash(
            writer.key("sentiment_drift"),
            {str(tweet): repr(score) for tweet, score in aggregates.drift.items()},
        )
        writer.commit()
    finally:
        client.close()
    mark_done(config, PURPOSE, events)
    return summary
