"""The interaction-analysis summary event, built from an activity report: what it carries,
that it passes its own schema, and that its id depends on the interval alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from starling.events import (
    MAX_TOP_TWEETS,
    ActivitySummary,
    InteractionAction,
    UserInteraction,
    decode_as,
    encode,
    new_event,
)
from starling.topics import ACTIVITY_SUMMARIES
from starling_operators.analytics import activity_report
from starling_operators.publish import validate_payloads
from starling_operators.tasks.interactions import TOP_TWEETS, summary_event

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def interaction(
    actor: int, action: InteractionAction, target: int, tweet: int | None = None
) -> UserInteraction:
    return new_event(
        UserInteraction,
        event_time=START + timedelta(minutes=1),
        actor_id=actor,
        action=action,
        target_user_id=target,
        tweet_id=tweet,
    )


INTERACTIONS = [
    interaction(1, InteractionAction.LIKE, 9, tweet=100),
    interaction(2, InteractionAction.LIKE, 9, tweet=100),
    interaction(2, InteractionAction.UNLIKE, 9, tweet=100),
    interaction(3, InteractionAction.REPLY, 8, tweet=200),
    interaction(4, InteractionAction.RETWEET, 8, tweet=300),
    interaction(5, InteractionAction.UNLIKE, 7, tweet=400),
    interaction(1, InteractionAction.FOLLOW, 8),
]


def test_summary_event_carries_the_reports_aggregates() -> None:
    event = summary_event(activity_report(INTERACTIONS), START, END, invalid_records=2)
    assert (event.interval_start, event.interval_end, event.event_time) == (START, END, END)
    assert event.interactions == 7 and event.invalid_records == 2
    assert event.actions == {
        InteractionAction.FOLLOW: 1,
        InteractionAction.LIKE: 2,
        InteractionAction.REPLY: 1,
        InteractionAction.RETWEET: 1,
        InteractionAction.UNLIKE: 2,
    }
    assert event.active_users == 5
    # Users 8 (reply + retweet) and 9 (net one like) got engagement; 7 only an unlike.
    assert event.users_engaged == 2
    assert event.engaged_tweets == 3
    assert event.engagement_total == 27.0 + 2.0 + 1.0 - 1.0
    # Tweet 400's net is negative: it is engaged with, but never "top".
    assert [(t.tweet_id, t.score) for t in event.top_tweets] == [
        (200, 27.0),
        (300, 2.0),
        (100, 1.0),
    ]
    # What publish_events checks before producing: the encoded event passes its schema.
    (checked,) = validate_payloads(ACTIVITY_SUMMARIES, [encode(event)])
    assert checked == event


def test_summary_event_id_depends_on_the_interval_only() -> None:
    report = activity_report(INTERACTIONS)
    first = summary_event(report, START, END, invalid_records=0)
    # A re-run may see different data (late records): still the same event, by id.
    rerun = summary_event(activity_report(INTERACTIONS[:2]), START, END, invalid_records=1)
    next_hour = summary_event(report, END, END + timedelta(hours=1), invalid_records=0)
    assert first.event_id == rerun.event_id
    assert next_hour.event_id != first.event_id
    assert first.partition_key() != next_hour.partition_key()


def test_an_empty_interval_still_gets_its_summary() -> None:
    event = summary_event(activity_report([]), START, END, invalid_records=0)
    assert decode_as(encode(event), ActivitySummary) == event
    assert (event.interactions, event.actions, event.top_tweets) == (0, {}, [])
    assert event.engagement_total == 0.0


def test_top_tweets_fit_the_schemas_bound() -> None:
    many = [interaction(1, InteractionAction.LIKE, 9, tweet=t) for t in range(1, 2 * TOP_TWEETS)]
    event = summary_event(activity_report(many), START, END, invalid_records=0)
    assert len(event.top_tweets) == TOP_TWEETS == MAX_TOP_TWEETS
    assert validate_payloads(ACTIVITY_SUMMARIES, [encode(event)])
