"""Reference computations: what the store must hold after a given input, computed
directly from the generated events without Kafka, the runtime or the services' code
paths (the pure detector is reused for trends: it is unit-tested on its own)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starling.events import (
    Event,
    InteractionAction,
    Recommendation,
    RecommendationKind,
    TweetCreated,
    UserInteraction,
)
from starling.loadgen import FollowGraph, user_id_for_handle
from starling.services.bursts import Detected, DetectionConfig, detect

_TAG = re.compile(r"(?<![\w&#])#(\w+)")
_HANDLE = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,15})(?![\w@])")
_NOTIFYING_ACTIONS = {
    InteractionAction.LIKE: "like",
    InteractionAction.RETWEET: "retweet",
    InteractionAction.QUOTE: "quote",
    InteractionAction.FOLLOW: "follow",
}


def expected_timelines(
    events: Iterable[Event],
    graph: FollowGraph,
    cap: int,
    recommendations: Sequence[Recommendation] = (),
) -> dict[int, list[int]]:
    """user -> tweet ids newest first: own tweets, followees' tweets and recommended
    tweets, the `cap` highest ids."""
    entries: dict[int, set[int]] = defaultdict(set)
    for event in events:
        if isinstance(event, TweetCreated):
            entries[event.author_id].add(event.tweet_id)
            for follower in graph.followers(event.author_id):
                entries[follower].add(event.tweet_id)
    for recommendation in recommendations:
        if recommendation.kind is RecommendationKind.TWEETS:
            entries[recommendation.user_id].update(item.item_id for item in recommendation.items)
    return {user: sorted(ids, reverse=True)[:cap] for user, ids in entries.items()}


@dataclass(frozen=True)
class ExpectedNotification:
    recipient: int
    kind: str
    source_event_id: str
    actor: int


def expected_notifications(events: Iterable[Event]) -> set[ExpectedNotification]:
    """Replies notify the replied-to author, mentions the mentioned user (not the author,
    not a reply's target twice); likes, retweets, quotes and follows notify the target."""
    expected: set[ExpectedNotification] = set()
    for event in events:
        if isinstance(event, TweetCreated):
            notified = {event.author_id}
            source = str(event.event_id)
            if event.reply_to_user_id is not None and event.reply_to_user_id not in notified:
                notified.add(event.reply_to_user_id)
                expected.add(
                    ExpectedNotification(event.reply_to_user_id, "reply", source, event.author_id)
                )
            for handle in _HANDLE.findall(event.text):
                user = user_id_for_handle(handle.lower())
                if user is not None and user not in notified:
                    notified.add(user)
                    expected.add(ExpectedNotification(user, "mention", source, event.author_id))
        elif isinstance(event, UserInteraction):
            kind = _NOTIFYING_ACTIONS.get(event.action)
            if kind is not None and event.actor_id != event.target_user_id:
                expected.add(
                    ExpectedNotification(
                        event.target_user_id, kind, str(event.event_id), event.actor_id
                    )
                )
    return expected


def window_counts(events: Iterable[Event], window_s: int) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for event in events:
        if isinstance(event, TweetCreated):
            seconds = int(event.event_time.timestamp())
            window = seconds - seconds % window_s
            for tag in dict.fromkeys(tag.casefold() for tag in _TAG.findall(event.text)):
                if not tag.isdigit():
                    counts[window][tag] += 1
    return {window: dict(tags) for window, tags in counts.items()}


def expected_trends(
    counts: dict[int, dict[str, int]], window_s: int, config: DetectionConfig
) -> dict[int, list[Detected]]:
    if not counts:
        return {}
    first = min(counts)
    result = {}
    for window in sorted(counts):
        history = [
            counts.get(window - step * window_s, {})
            for step in range(1, config.baseline_windows + 1)
            if window - step * window_s >= first
        ]
        result[window] = detect(counts[window], history, config)
    return result
