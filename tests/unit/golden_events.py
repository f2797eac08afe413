"""The canonical instance of every event schema; `tests/golden/events/` holds their bytes.

Regenerate the files only on a deliberate schema change:
    uv run python -m tests.unit.golden_events --write
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from starling.events import (
    EVENT_TYPES,
    ActivitySummary,
    InteractionAction,
    LoginOutcome,
    Notification,
    NotificationKind,
    Platform,
    Recommendation,
    RecommendationKind,
    RecommendedItem,
    Trend,
    TweetCreated,
    TweetEngagement,
    TweetEnriched,
    UserInteraction,
    UserLogin,
    encode,
    type_tag,
)
from starling.events.schemas import EventBase

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "events"
WHEN = datetime(2026, 11, 27, 9, 30, 15, 250_000, tzinfo=UTC)


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n, version=4)


GOLDEN_EVENTS: tuple[EventBase, ...] = (
    UserLogin(
        event_id=_id(1),
        schema_version=1,
        event_time=WHEN,
        user_id=42,
        success=False,
        ip="203.0.113.7",
        country="NZ",
        device_id="dev-9f2c",
        platform=Platform.IOS,
        failure_reason="bad_password",
    ),
    UserLogin(
        event_id=_id(9),
        schema_version=2,
        event_time=WHEN,
        user_id=42,
        username="u42",
        outcome=LoginOutcome.BAD_PASSWORD,
        success=False,
        ip="2001:db8::7",
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Starling/3.2",
        country="NZ",
        device_id="dev-9f2c",
        platform=Platform.IOS,
    ),
    TweetCreated(
        event_id=_id(2),
        schema_version=1,
        event_time=WHEN,
        tweet_id=1_861_000_000_000_000_001,
        author_id=42,
        text="Shipping Starling today ✨ #kafka #Airflow thanks @u7",
        platform=Platform.WEB,
        reply_to_tweet_id=1_861_000_000_000_000_000,
        reply_to_user_id=7,
    ),
    TweetEnriched(
        event_id=_id(3),
        schema_version=1,
        event_time=WHEN,
        tweet_id=1_861_000_000_000_000_001,
        author_id=42,
        text="Shipping Starling today ✨ #kafka #Airflow thanks @u7",
        hashtags=["kafka", "airflow"],
        mentions=["u7"],
        lang="en",
        sentiment=0.4404,
        source_event_id=_id(2),
        reply_to_tweet_id=1_861_000_000_000_000_000,
        reply_to_user_id=7,
    ),
    UserInteraction(
        event_id=_id(4),
        schema_version=1,
        event_time=WHEN,
        actor_id=7,
        action=InteractionAction.LIKE,
        target_user_id=42,
        tweet_id=1_861_000_000_000_000_001,
        platform=Platform.ANDROID,
    ),
    Recommendation(
        event_id=_id(5),
        schema_version=1,
        event_time=WHEN,
        user_id=7,
        kind=RecommendationKind.WHO_TO_FOLLOW,
        items=[
            RecommendedItem(item_id=99, score=1.25, reason="friends_of_friends"),
            RecommendedItem(item_id=101, score=0.5),
        ],
        model="fof-v1",
    ),
    Notification(
        event_id=_id(6),
        schema_version=1,
        event_time=WHEN,
        recipient_id=42,
        kind=NotificationKind.LIKE,
        source_event_id=_id(4),
        actor_id=7,
        tweet_id=1_861_000_000_000_000_001,
    ),
    Trend(
        event_id=_id(7),
        schema_version=1,
        event_time=WHEN,
        hashtag="kafka",
        window_start=datetime(2026, 11, 27, 9, 25, tzinfo=UTC),
        window_end=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
        count=310,
        expected=42.5,
        score=9.75,
        rank=1,
    ),
    ActivitySummary(
        event_id=_id(8),
        schema_version=1,
        event_time=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        interval_start=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        interval_end=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        interactions=6,
        invalid_records=1,
        actions={
            InteractionAction.FOLLOW: 1,
            InteractionAction.LIKE: 3,
            InteractionAction.REPLY: 1,
            InteractionAction.UNLIKE: 1,
        },
        active_users=4,
        users_engaged=2,
        engaged_tweets=2,
        engagement_total=29.0,
        top_tweets=[
            TweetEngagement(tweet_id=1_861_000_000_000_000_001, score=27.0),
            TweetEngagement(tweet_id=1_861_000_000_000_000_002, score=2.0),
        ],
    ),
)


def golden_path(event: EventBase) -> Path:
    return GOLDEN_DIR / f"{type_tag(type(event))}.v{event.schema_version}.json"


def _write() -> None:
    covered = {type(event) for event in GOLDEN_EVENTS}
    assert covered == set(EVENT_TYPES), f"missing golden events for {set(EVENT_TYPES) - covered}"
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for event in GOLDEN_EVENTS:
        golden_path(event).write_bytes(encode(event) + b"\n")
        print(f"wrote {golden_path(event)}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        _write()
