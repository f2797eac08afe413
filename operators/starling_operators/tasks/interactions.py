"""user_interaction_analysis: per-user activity and engagement aggregates of an interval,
stored, and announced with one `ActivitySummary` event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starling.events import (
    MAX_TOP_TWEETS,
    ActivitySummary,
    InteractionAction,
    TweetEngagement,
    UserInteraction,
)
from starling.topics import ACTIVITY_SUMMARIES, INTERACTIONS
from starling_operators import settings
from starling_operators.analytics import ActivityReport, activity_report
from starling_operators.connection import kafka_config, store_client
from starling_operators.publish import publish_events
from starling_operators.records import derived_event_id
from starling_operators.store import IntervalWriter, interval_id
from starling_operators.tasks._common import as_utc, mark_done, read_events

PURPOSE = "interaction-analysis"
# The store's `top_tweets` and the summary event carry the same ranking, so the event's
# bound is the limit.
TOP_TWEETS = MAX_TOP_TWEETS


def summary_event(
    report: ActivityReport, start: datetime, end: datetime, invalid_records: int
) -> ActivitySummary:
    """The interval's summary. Its id derives from the interval alone and its time is the
    interval end, so every run of the interval sends the same event and consumers dedupe."""
    return ActivitySummary(
        event_id=derived_event_id(PURPOSE, "summary", interval_id(start, end)),
        schema_version=ActivitySummary.SCHEMA_VERSION,
        event_time=end,
        interval_start=start,
        interval_end=end,
        interactions=report.events,
        invalid_records=invalid_records,
        actions={
            InteractionAction(action): count
            for action, count in sorted(report.action_counts.items())
        },
        active_users=report.active_users,
        users_engaged=report.users_engaged,
        engaged_tweets=report.engaged_tweets,
        engagement_total=report.engagement_total,
        top_tweets=[
            TweetEngagement(tweet_id=tweet, score=score)
            for tweet, score in report.top_tweets(TOP_TWEETS)
        ],
    )


def analyse_interactions(
    start: datetime,
    end: datetime,
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    """Store `activity:<interval>:user:<u>` hashes, `...:summary` and `...:top_tweets` (a
    re-run replaces them), then publish the interval's `ActivitySummary` to
    `activity.summaries`. Returns the stored summary (the task's XCom)."""
    start, end = as_utc(start), as_utc(end)
    config = kafka_config(kafka_conn_id)
    events = read_events(config, INTERACTIONS, UserInteraction, start, end, PURPOSE)
    report = activity_report(events.decoded.events)
    invalid_records = len(events.decoded.dead_letters)

    client = store_client(store_conn_id)
    try:
        writer = IntervalWriter(client, "activity", start, end)
        for user, activity in report.users.items():
            writer.hash(writer.key("user", user), activity.as_fields())
        summary = {
            **report.summary_fields(),
            "interval": interval_id(start, end),
            "invalid": str(invalid_records),
        }
        writer.hash(writer.key("summary"), summary)
        writer.zset(writer.key("top_tweets"), {str(t): s for t, s in report.top_tweets(TOP_TWEETS)})
        writer.commit()
    finally:
        client.close()
    # Announced only once the store holds what it summarises, so a consumer that reacts by
    # reading the interval's keys finds them. publish_events raises unless the broker
    # acknowledged it: the task then fails and its retry sends the same event id.
    publish_events(config, ACTIVITY_SUMMARIES, [summary_event(report, start, end, invalid_records)])
    mark_done(config, PURPOSE, events)
    return summary
