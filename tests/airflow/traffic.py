"""Seeded loadgen traffic for the DAG tests, produced to a test's prefixed topics with the
event time as the record timestamp (what the gateway does in production: records are
produced as events happen)."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starling.events import (
    Event,
    InteractionAction,
    TweetCreated,
    TweetEnriched,
    UserInteraction,
    UserLogin,
)
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.topics import INTERACTIONS, LOGINS, TWEETS_ENRICHED
from starling_operators import kafka as kafka_helpers
from starling_operators.records import event_message

# Interval under test: [10:00, 11:00). Traffic runs 09:40-10:46:40 (4000 events, 1/s),
# so a third of it is before the interval and must be left out.
INTERVAL_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
INTERVAL_END = INTERVAL_START + timedelta(hours=1)
EPOCH = INTERVAL_START - timedelta(minutes=20)

_HASHTAG = re.compile(r"#(\w+)")
_MENTION = re.compile(r"@(\w+)")


@dataclass
class Traffic:
    generator: TrafficGenerator
    events: list[Event]
    enriched: list[TweetEnriched] = field(default_factory=list)
    malformed: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    @property
    def interactions(self) -> list[UserInteraction]:
        return [e for e in self.events if isinstance(e, UserInteraction)]

    @property
    def logins(self) -> list[UserLogin]:
        return [e for e in self.events if isinstance(e, UserLogin)]


def enrich(tweet: TweetCreated, sentiment: float) -> TweetEnriched:
    """What ingestion would publish for the tweet (extraction done independently here)."""
    return TweetEnriched(
        event_id=uuid.uuid5(tweet.event_id, "enriched"),
        schema_version=1,
        event_time=tweet.event_time,
        tweet_id=tweet.tweet_id,
        author_id=tweet.author_id,
        text=tweet.text,
        hashtags=_HASHTAG.findall(tweet.text),
        mentions=_MENTION.findall(tweet.text),
        lang="en",
        sentiment=sentiment,
        source_event_id=tweet.event_id,
        reply_to_tweet_id=tweet.reply_to_tweet_id,
        reply_to_user_id=tweet.reply_to_user_id,
        quote_of_tweet_id=tweet.quote_of_tweet_id,
    )


def make_traffic(seed: int = 7, users: int = 300, count: int = 4000) -> Traffic:
    generator = TrafficGenerator(
        TrafficConfig(seed=seed, users=users, epoch=EPOCH, events_per_second=1.0)
    )
    events = list(generator.events(count))
    traffic = Traffic(generator, events)
    for index, tweet in enumerate(e for e in events if isinstance(e, TweetCreated)):
        # Every 7th tweet gets a stored sentiment far from the lexicon's (drift to detect);
        # the rest what VADER says, as ingestion would.
        from starling_operators import sentiment

        score = sentiment.score(tweet.text)
        stored = -score if index % 7 == 0 and abs(score) > 0.3 else score
        traffic.enriched.append(enrich(tweet, stored))
    return traffic


MALFORMED = (b"not json at all", b'{"type": "user.interaction", "schema_version": 1}', b"[]")


def produce_traffic(bootstrap: str, prefix: str, traffic: Traffic) -> None:
    """Interactions, enriched tweets and logins to their prefixed topics, plus a few
    malformed records inside the interval on the interaction and enriched-tweet topics."""
    config = {"bootstrap.servers": bootstrap}
    in_interval_ms = int((INTERVAL_START + timedelta(minutes=5)).timestamp() * 1000)
    by_topic: dict[str, list[kafka_helpers.OutgoingMessage]] = defaultdict(list)
    for event in traffic.interactions:
        by_topic[INTERACTIONS].append(event_message(event))
    for event in traffic.logins:
        by_topic[LOGINS].append(event_message(event))
    for event in traffic.enriched:
        by_topic[TWEETS_ENRICHED].append(event_message(event))
    for topic in (INTERACTIONS, TWEETS_ENRICHED):
        for index, payload in enumerate(MALFORMED):
            traffic.malformed[topic].append(payload)
            by_topic[topic].append(
                kafka_helpers.OutgoingMessage(
                    key=b"bad", value=payload, timestamp_ms=in_interval_ms + index
                )
            )
    for topic, messages in by_topic.items():
        kafka_helpers.produce_all(config, prefix + topic, messages, timeout=60)


def in_interval(moment: datetime) -> bool:
    return INTERVAL_START <= moment < INTERVAL_END


TWEET_WEIGHTS = {
    InteractionAction.REPLY: 27.0,
    InteractionAction.RETWEET: 2.0,
    InteractionAction.QUOTE: 2.0,
    InteractionAction.LIKE: 1.0,
    InteractionAction.UNLIKE: -1.0,
}


def read_topic(bootstrap: str, topic: str) -> list[kafka_helpers.KafkaRecord]:
    """Every record of a topic (any timestamp)."""
    return kafka_helpers.read_interval(
        {"bootstrap.servers": bootstrap},
        topic,
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        "starling-airflow-test-reader",
        timeout=30,
    ).records
