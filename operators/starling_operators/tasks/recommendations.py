"""recommendations: who-to-follow and tweet recommendations for the users active in an
interval, from the store's social graph and the lookback's engagement.

The tweet candidates (decayed scores, authors, engagers) are also kept in the store as a
snapshot, so the login DAG can refresh one user's recommendations without re-reading the
lookback from Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from starling.events import (
    Recommendation,
    RecommendationKind,
    RecommendedItem,
    TweetEnriched,
    UserInteraction,
)
from starling.topics import INTERACTIONS, RECOMMENDATIONS, TWEETS_ENRICHED
from starling_operators import settings, store
from starling_operators.analytics import (
    TweetCandidate,
    rank_tweet_candidates,
    recommend_tweets,
    who_to_follow,
)
from starling_operators.connection import kafka_config, store_client
from starling_operators.publish import publish_events
from starling_operators.records import derived_event_id
from starling_operators.tasks._common import as_utc, mark_done, read_events

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

PURPOSE = "recommendations"
DEFAULT_LOOKBACK = timedelta(days=1)
WHO_TO_FOLLOW_MODEL = "fof-selective-v1"
TWEETS_MODEL = "engagement-decay-v1"


class _Snapshot(msgspec.Struct, frozen=True):
    interval_end: datetime
    # (tweet id, author, created, score, engagers)
    candidates: list[tuple[int, int, datetime, float, list[int]]]


def snapshot_key() -> str:
    return store.key("recs", "tweet_candidates")


def build_recommendations(
    user: int,
    when: datetime,
    following: Mapping[int, Collection[int]],
    excluded: Collection[int],
    candidates: Mapping[int, TweetCandidate],
    id_parts: Iterable[object],
) -> list[Recommendation]:
    """The user's two recommendation events (empty lists are not sent). Ids derive from
    `id_parts` + user + kind, so a re-run emits the same ids."""
    parts = tuple(id_parts)
    events = []
    accounts = who_to_follow(user, following, excluded)
    if accounts:
        events.append(
            Recommendation(
                event_id=derived_event_id(*parts, user, RecommendationKind.WHO_TO_FOLLOW),
                schema_version=Recommendation.SCHEMA_VERSION,
                event_time=when,
                user_id=user,
                kind=RecommendationKind.WHO_TO_FOLLOW,
                items=[
                    RecommendedItem(item_id=c, score=s, reason="followed by people you follow")
                    for c, s in accounts
                ],
                model=WHO_TO_FOLLOW_MODEL,
            )
        )
    tweets = recommend_tweets(user, candidates, following, excluded)
    if tweets:
        events.append(
            Recommendation(
                event_id=derived_event_id(*parts, user, RecommendationKind.TWEETS),
                schema_version=Recommendation.SCHEMA_VERSION,
                event_time=when,
                user_id=user,
                kind=RecommendationKind.TWEETS,
                items=[
                    RecommendedItem(item_id=t, score=s, reason="engaging now") for t, s in tweets
                ],
                model=TWEETS_MODEL,
            )
        )
    return events


def graph_for(
    client: redis.Redis, users: Collection[int]
) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """(following of the users and their followees, blocked | muted of the users)."""
    following = store.read_two_hop_following(client, users)
    relations = store.read_graph(client, users, ("blocked", "muted"))
    excluded: dict[int, set[int]] = {}
    for relation in relations.values():
        for user, others in relation.items():
            excluded.setdefault(user, set()).update(others)
    return following, excluded


def recommend_for_interval(
    start: datetime,
    end: datetime,
    lookback: timedelta = DEFAULT_LOOKBACK,
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    start, end = as_utc(start), as_utc(end)
    config = kafka_config(kafka_conn_id)
    window_start = min(start, end - lookback)
    # Bad records of these topics are dead-lettered by the DAGs that own their interval.
    interactions = read_events(
        config, INTERACTIONS, UserInteraction, window_start, end, PURPOSE, dead_letters=False
    )
    tweets = read_events(
        config, TWEETS_ENRICHED, TweetEnriched, window_start, end, PURPOSE, dead_letters=False
    )
    active = sorted(
        {e.actor_id for e in interactions.decoded.events if start <= e.event_time < end}
    )
    candidates = rank_tweet_candidates(tweets.decoded.events, interactions.decoded.events, end)

    client = store_client(store_conn_id)
    try:
        following, excluded = graph_for(client, active)
        recommendations = [
            event
            for user in active
            for event in build_recommendations(
                user,
                end,
                following,
                excluded.get(user, set()),
                candidates,
                ("recommendations", store.interval_id(start, end)),
            )
        ]
        report = publish_events(config, RECOMMENDATIONS, recommendations)
        _save_snapshot(client, end, candidates)
        summary = {
            "interval": store.interval_id(start, end),
            "active_users": str(len(active)),
            "recommendations": str(report.delivered),
            "tweet_candidates": str(len(candidates)),
        }
        writer = store.IntervalWriter(client, "recs", start, end)
        writer.hash(writer.key("summary"), summary)
        writer.commit()
    finally:
        client.close()
    mark_done(config, PURPOSE, interactions)
    return summary


def _save_snapshot(
    client: redis.Redis, interval_end: datetime, candidates: Mapping[int, TweetCandidate]
) -> None:
    """Keep the newest interval's candidates; re-running an older interval must not
    replace a newer snapshot (WATCH makes the compare-and-set atomic)."""
    snapshot = _Snapshot(
        interval_end,
        [
            (c.tweet_id, c.author_id, c.created, c.score, sorted(c.engagers))
            for c in sorted(candidates.values(), key=lambda c: c.tweet_id)
        ],
    )
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(snapshot_key())  # type: ignore[no-untyped-call]
        current = pipe.get(snapshot_key())
        if current is not None:
            stored = msgspec.json.decode(current, type=_Snapshot)
            if stored.interval_end > interval_end:
                log.info("kept the newer tweet-candidate snapshot of %s", stored.interval_end)
                return
        pipe.multi()
        pipe.set(
            snapshot_key(),
            msgspec.json.encode(snapshot),
            ex=int(store.INTERVAL_TTL.total_seconds()),
        )
        pipe.execute()


def load_snapshot(client: redis.Redis) -> dict[int, TweetCandidate]:
    raw = client.get(snapshot_key())
    if raw is None:
        return {}
    snapshot = msgspec.json.decode(raw, type=_Snapshot)
    return {
        tweet: TweetCandidate(tweet, author, created, score, frozenset(engagers))
        for tweet, author, created, score, engagers in snapshot.candidates
    }
