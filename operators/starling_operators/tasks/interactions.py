"""user_interaction_analysis: per-user activity and engagement aggregates of an interval."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starling.events import UserInteraction
from starling.topics import INTERACTIONS
from starling_operators import settings
from starling_operators.analytics import activity_report
from starling_operators.connection import kafka_config, store_client
from starling_operators.store import IntervalWriter, interval_id
from starling_operators.tasks._common import as_utc, mark_done, read_events

PURPOSE = "interaction-analysis"
TOP_TWEETS = 100


def analyse_interactions(
    start: datetime,
    end: datetime,
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    """Store `activity:<interval>:user:<u>` hashes, `...:summary` and `...:top_tweets`;
    a re-run replaces them. Returns the summary (the task's XCom)."""
    start, end = as_utc(start), as_utc(end)
    config = kafka_config(kafka_conn_id)
    events = read_events(config, INTERACTIONS, UserInteraction, start, end, PURPOSE)
    report = activity_report(events.decoded.events)

    client = store_client(store_conn_id)
    try:
        writer = IntervalWriter(client, "activity", start, end)
        for user, activity in report.users.items():
            writer.hash(writer.key("user", user), activity.as_fields())
        summary = {
            **report.summary_fields(),
            "interval": interval_id(start, end),
            "invalid": str(len(events.decoded.dead_letters)),
        }
        writer.hash(writer.key("summary"), summary)
        writer.zset(writer.key("top_tweets"), {str(t): s for t, s in report.top_tweets(TOP_TWEETS)})
        writer.commit()
    finally:
        client.close()
    mark_done(config, PURPOSE, events)
    return summary
