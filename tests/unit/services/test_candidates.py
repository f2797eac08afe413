"""Who gets notified of what: ingestion's and the notifier's candidate rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from starling.events import (
    InteractionAction,
    Notification,
    NotificationKind,
    Platform,
    TweetCreated,
    UserInteraction,
    new_event,
)
from starling.runtime.handler import ProcessingError
from starling.services.ingestion import Enricher, notification_candidates
from starling.services.notifier import (
    candidate_from_interaction,
    candidate_from_notification,
    delivery_id,
)

pytestmark = pytest.mark.unit


def tweet(text: str, **fields: Any) -> TweetCreated:
    return new_event(
        TweetCreated, tweet_id=10, author_id=1, text=text, platform=Platform.WEB, **fields
    )


def test_enrichment_is_deterministic_and_derives_ids() -> None:
    source = tweet("Great #Kafka day with @U2")
    first, second = Enricher().enrich(source), Enricher().enrich(source)
    assert first == second
    assert first.event_id != source.event_id and first.source_event_id == source.event_id
    assert first.hashtags == ["kafka"] and first.mentions == ["u2"] and first.sentiment > 0


def test_text_that_cleans_to_nothing_is_a_processing_error() -> None:
    with pytest.raises(ProcessingError) as caught:
        Enricher().enrich(tweet("\u200b\u200b"))
    assert caught.value.field == "$.text"


def test_reply_and_mentions_notify_each_user_once_never_the_author() -> None:
    source = tweet("@u2 yes and @u3 @u1 @nobody", reply_to_tweet_id=5, reply_to_user_id=2)
    enriched = Enricher().enrich(source)
    candidates = notification_candidates(enriched, {"u1": 1, "u2": 2, "u3": 3})
    assert [(c.recipient_id, c.kind) for c in candidates] == [
        (2, NotificationKind.REPLY),
        (3, NotificationKind.MENTION),
    ]
    again = notification_candidates(enriched, {"u1": 1, "u2": 2, "u3": 3})
    assert [c.event_id for c in again] == [c.event_id for c in candidates]


def test_interactions_notify_their_target_only_for_notifying_actions() -> None:
    like = new_event(
        UserInteraction,
        actor_id=4,
        action=InteractionAction.LIKE,
        target_user_id=9,
        tweet_id=3,
    )
    candidate = candidate_from_interaction(like)
    assert candidate is not None and candidate[0] == 9 and candidate[1].kind == "like"
    own = new_event(
        UserInteraction, actor_id=9, action=InteractionAction.LIKE, target_user_id=9, tweet_id=3
    )
    assert candidate_from_interaction(own) is None
    unlike = new_event(
        UserInteraction, actor_id=4, action=InteractionAction.UNLIKE, target_user_id=9, tweet_id=3
    )
    assert candidate_from_interaction(unlike) is None


def test_the_same_cause_gives_the_same_notification_id_whoever_reports_it() -> None:
    source = uuid.uuid4()
    a = new_event(
        Notification,
        recipient_id=2,
        kind=NotificationKind.MENTION,
        source_event_id=source,
        actor_id=1,
    )
    b = new_event(
        Notification,
        recipient_id=2,
        kind=NotificationKind.MENTION,
        source_event_id=source,
        actor_id=1,
    )
    assert candidate_from_notification(a)[1].id == candidate_from_notification(b)[1].id
    assert delivery_id(2, NotificationKind.MENTION, source) != delivery_id(
        3, NotificationKind.MENTION, source
    )
