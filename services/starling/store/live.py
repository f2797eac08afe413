"""Live updates: small pub/sub messages a service publishes after its durable write.

They are hints for connected clients (the gateway forwards them over SSE), not a record:
the store keeps the truth, a message published while nobody listens is gone, and a batch
the runtime retries publishes again. So every message names what it is about (tweet
ids, the notification id) and clients dedupe by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from starling.store import keys
from starling.store.notifications import InboxEntry


class TimelineUpdate(msgspec.Struct, frozen=True, tag="timeline", tag_field="kind"):
    """Tweets newly merged into the user's home timeline."""

    tweet_ids: list[int]


class NotificationUpdate(msgspec.Struct, frozen=True, tag="notification", tag_field="kind"):
    """A notification delivered to the user's in-app inbox."""

    entry: InboxEntry


LiveUpdate = TimelineUpdate | NotificationUpdate


class NewTweets(msgspec.Struct, frozen=True, tag="tweets", tag_field="kind"):
    """Tweets ingestion just fanned out, as (tweet id, author id): one message per batch
    for every follower of every author, on `keys.LIVE_TWEETS_CHANNEL`. Gateways know
    which of their connected users follow whom and turn it into `TimelineUpdate`s."""

    tweets: list[tuple[int, int]]


# Bounds one message (~35 B a tweet) whatever the batch size the runtime hands over.
MAX_TWEETS_PER_MESSAGE = 1000

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[LiveUpdate] = msgspec.json.Decoder(LiveUpdate)
_new_tweets_decoder: msgspec.json.Decoder[NewTweets] = msgspec.json.Decoder(NewTweets)


def encode_update(update: LiveUpdate) -> bytes:
    return _encoder.encode(update)


def decode_update(payload: bytes) -> LiveUpdate:
    """Raises msgspec.DecodeError/ValidationError for a message that is not an update."""
    return _decoder.decode(payload)


def decode_new_tweets(payload: bytes) -> NewTweets:
    """Raises msgspec.DecodeError/ValidationError for a message that is not `NewTweets`."""
    return _new_tweets_decoder.decode(payload)


def publish_new_tweets(pipe: Any, tweets: Sequence[tuple[int, int]]) -> None:
    """Queue announcing fanned-out (tweet id, author id) pairs: one PUBLISH per
    `MAX_TWEETS_PER_MESSAGE`, never one per follower."""
    for start in range(0, len(tweets), MAX_TWEETS_PER_MESSAGE):
        chunk = list(tweets[start : start + MAX_TWEETS_PER_MESSAGE])
        pipe.publish(keys.LIVE_TWEETS_CHANNEL, _encoder.encode(NewTweets(chunk)))


def publish_timeline(pipe: Any, user_id: int, tweet_ids: Sequence[int]) -> None:
    """Queue a timeline update (on a pipeline or a client)."""
    if tweet_ids:
        pipe.publish(keys.live_channel(user_id), encode_update(TimelineUpdate(list(tweet_ids))))


def publish_notification(pipe: Any, user_id: int, entry: InboxEntry) -> None:
    pipe.publish(keys.live_channel(user_id), encode_update(NotificationUpdate(entry)))
