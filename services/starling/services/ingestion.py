"""Ingestion: validate and enrich tweets, fan them out to home timelines, emit
mention and reply notification candidates.

Per batch: enrich every tweet (a tweet that cannot be cleaned, or whose event time is
further ahead of the clock than `STARLING_EVENT_TIME_SKEW_S`, goes to the DLQ), read the
authors' followers and resolve mentioned handles in one store round trip, write the
fan-out and tweet bodies in a second (pipelined, idempotent), announce the batch's new
tweets on the store's `live:tweets` channel (one message, for the gateways' live
timelines), then hand the enriched tweets and notification candidates to the runtime to
publish. Derived events have ids derived from the source event, so a redelivered tweet
republishes identical events, and their Kafka timestamp is the tweet's event time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from starling.events import (
    Notification,
    NotificationKind,
    TweetCreated,
    TweetEnriched,
    encode,
)
from starling.runtime.config import RuntimeSettings, load_settings
from starling.runtime.eventtime import (
    EVENT_TIME_FIELD,
    FUTURE_REASON,
    EventTimeBound,
    EventTimeSettings,
    timestamp_ms,
)
from starling.runtime.handler import BaseHandler, Outbox, ProcessingError, Record
from starling.services.common import StoreReadiness, derived_id, store_client
from starling.services.text import (
    LexiconSentiment,
    clean_text,
    detect_language,
    extract_hashtags,
    extract_mentions,
)
from starling.store import keys
from starling.store.graph import followers_of
from starling.store.live import publish_new_tweets
from starling.store.timelines import DEFAULT_CAP, TimelineStore
from starling.topics import NOTIFICATIONS, TWEETS, TWEETS_ENRICHED


class IngestionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STARLING_", extra="ignore", frozen=True)

    timeline_cap: int = Field(default=DEFAULT_CAP, ge=1, le=100_000)
    # Tweet bodies are kept for rendering timelines; a week covers any active timeline.
    tweet_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)


class Enricher:
    """TweetCreated -> TweetEnriched; pure apart from the sentiment lexicon it loads once."""

    def __init__(self, sentiment: LexiconSentiment | None = None) -> None:
        self._sentiment = sentiment or LexiconSentiment()

    def enrich(self, tweet: TweetCreated) -> TweetEnriched:
        text = clean_text(tweet.text)
        if not text:
            raise ProcessingError("invalid", "text is empty once cleaned", "$.text")
        return TweetEnriched(
            event_id=derived_id("enriched", tweet.event_id),
            schema_version=TweetEnriched.SCHEMA_VERSION,
            event_time=tweet.event_time,
            tweet_id=tweet.tweet_id,
            author_id=tweet.author_id,
            text=text,
            hashtags=extract_hashtags(text),
            mentions=extract_mentions(text),
            lang=detect_language(text),
            sentiment=self._sentiment.score(text),
            source_event_id=tweet.event_id,
            reply_to_tweet_id=tweet.reply_to_tweet_id,
            reply_to_user_id=tweet.reply_to_user_id,
            quote_of_tweet_id=tweet.quote_of_tweet_id,
        )


def notification_candidates(
    tweet: TweetEnriched, mentioned_ids: Mapping[str, int]
) -> list[Notification]:
    """A reply notifies the replied-to author; a mention notifies the mentioned user,
    unless they are the author or already notified of the same tweet as a reply."""
    candidates: list[Notification] = []
    notified = {tweet.author_id}
    if tweet.reply_to_user_id is not None and tweet.reply_to_user_id not in notified:
        notified.add(tweet.reply_to_user_id)
        candidates.append(_candidate(tweet, NotificationKind.REPLY, tweet.reply_to_user_id))
    for handle in tweet.mentions:
        recipient = mentioned_ids.get(handle)
        if recipient is not None and recipient not in notified:
            notified.add(recipient)
            candidates.append(_candidate(tweet, NotificationKind.MENTION, recipient))
    return candidates


def _candidate(tweet: TweetEnriched, kind: NotificationKind, recipient: int) -> Notification:
    return Notification(
        event_id=derived_id("notification", kind.value, tweet.source_event_id, recipient),
        schema_version=Notification.SCHEMA_VERSION,
        event_time=tweet.event_time,
        recipient_id=recipient,
        kind=kind,
        source_event_id=tweet.source_event_id,
        actor_id=tweet.author_id,
        tweet_id=tweet.tweet_id,
    )


class IngestionHandler(BaseHandler):
    def __init__(
        self,
        runtime_settings: RuntimeSettings,
        client: redis.Redis | None = None,
        settings: IngestionSettings | None = None,
        *,
        fan_out: bool = True,
        event_time: EventTimeSettings | None = None,
    ) -> None:
        self.settings = settings or load_settings(IngestionSettings)
        self.event_time_bound = EventTimeBound(
            (event_time or load_settings(EventTimeSettings)).event_time_skew_s
        )
        self.client = client or store_client(runtime_settings)
        self.timelines = TimelineStore(self.client, self.settings.timeline_cap)
        self.enricher = Enricher()
        self.fan_out_enabled = fan_out
        self._tweets_topic = runtime_settings.topic(TWEETS)
        self._enriched_topic = runtime_settings.topic(TWEETS_ENRICHED)
        self._notifications_topic = runtime_settings.topic(NOTIFICATIONS)
        self._readiness = StoreReadiness(self.client)

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {self._tweets_topic: TweetCreated}

    def store_ready(self) -> bool:
        return self._readiness()

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        enrich = self.enricher.enrich
        tweets: list[TweetEnriched] = []
        limit = self.event_time_bound.limit()
        for record in records:
            event_time = record.event.event_time
            if event_time.timestamp() > limit:
                outbox.dead_letter(
                    record,
                    FUTURE_REASON,
                    self.event_time_bound.describe(event_time),
                    EVENT_TIME_FIELD,
                )
                continue
            try:
                tweets.append(enrich(record.event))
            except ProcessingError as error:
                outbox.dead_letter(record, error.kind, error.reason, error.field)
        if not tweets:
            return
        mentioned_ids = self._apply_store_effects(tweets) if self.fan_out_enabled else {}
        enriched_topic = self._enriched_topic
        notifications_topic = self._notifications_topic
        for tweet in tweets:
            # Record timestamp = event time: the interval DAGs select by it.
            stamp = timestamp_ms(tweet.event_time)
            outbox.emit(enriched_topic, str(tweet.tweet_id).encode(), encode(tweet), stamp)
            if tweet.reply_to_user_id is not None or tweet.mentions:
                for candidate in notification_candidates(tweet, mentioned_ids):
                    outbox.emit(
                        notifications_topic,
                        str(candidate.recipient_id).encode(),
                        encode(candidate),
                        stamp,
                    )

    def _apply_store_effects(self, tweets: list[TweetEnriched]) -> dict[str, int]:
        """Fan out and store bodies; returns the mentioned handles' user ids."""
        authors = list(dict.fromkeys(tweet.author_id for tweet in tweets))
        handles = list(dict.fromkeys(h for tweet in tweets for h in tweet.mentions))
        read = self.client.pipeline(transaction=False)
        followers_of(read, authors)
        if handles:
            read.hmget(keys.HANDLES, handles)
        results = read.execute()
        followers: dict[int, Any] = dict(zip(authors, results, strict=False))
        mentioned_ids: dict[str, int] = {}
        if handles:
            for handle, user in zip(handles, results[-1], strict=True):
                if user is not None:
                    mentioned_ids[handle] = int(user)

        write = self.client.pipeline(transaction=False)
        fan_out = self.timelines.fan_out
        ttl = self.settings.tweet_ttl_s
        for tweet in tweets:
            # Authors see their own tweets at home too.
            fan_out(write, tweet.tweet_id, [tweet.author_id, *followers[tweet.author_id]])
            write.set(keys.tweet(tweet.tweet_id), encode(tweet), ex=ttl)
        write.execute()
        # Only after the fan-out is durable (a client told "new tweets" must find them),
        # and once per batch on one channel: a PUBLISH per follower would double the
        # store's work on the hot path; gateways route by who their clients follow.
        live = self.client.pipeline(transaction=False)
        publish_new_tweets(live, [(tweet.tweet_id, tweet.author_id) for tweet in tweets])
        live.execute()
        return mentioned_ids

    def close(self) -> None:
        self.client.close()
