"""Timelines: merge `recommendations` into home timelines.

Tweet recommendations are merged into the user's capped home timeline (the same sorted
set ingestion fans out to), so they appear in time order among followed accounts'
tweets, once each however often they are recommended. Who-to-follow lists replace the
stored one only if they are not older than it, so a redelivered old list cannot
overwrite a newer one.

Recommendations come only from the Airflow `recommendations` DAG (hourly): without Airflow
this service idles, correctly. So that nobody mistakes that for a fault, it says at start
what it waits for and, until the first recommendation arrives, repeats every
`timelines_idle_notice_s` (default 60 s) that none came yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from starling.events import Recommendation, RecommendationKind
from starling.runtime.config import RuntimeSettings, load_settings
from starling.runtime.eventtime import (
    EVENT_TIME_FIELD,
    FUTURE_REASON,
    EventTimeBound,
    EventTimeSettings,
)
from starling.runtime.handler import BaseHandler, Outbox, Record
from starling.services.common import StoreReadiness, store_client
from starling.store import keys
from starling.store.live import publish_timeline
from starling.store.timelines import DEFAULT_CAP, TimelineStore
from starling.topics import RECOMMENDATIONS

log = logging.getLogger("starling.timelines")

IDLE_NOTICE = (
    "timelines: no recommendations consumed yet from %s — they come from the Airflow"
    " recommendations DAG (hourly); timelines still fill from ingestion's fan-out"
)

# KEYS[1]: who-to-follow hash; ARGV: event time (ms), items JSON.
_REPLACE_IF_NOT_OLDER = """
local current = redis.call('HGET', KEYS[1], 'time_ms')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'time_ms', ARGV[1], 'items', ARGV[2])
return 1
"""


class TimelinesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STARLING_", extra="ignore", frozen=True)

    timeline_cap: int = Field(default=DEFAULT_CAP, ge=1, le=100_000)
    # How often to say that no recommendation has arrived yet (STARLING_TIMELINES_IDLE_NOTICE_S).
    timelines_idle_notice_s: float = Field(default=60.0, gt=0)


class WhoToFollowEntry(msgspec.Struct, frozen=True):
    user_id: int
    score: float
    reason: str = ""


_entries_encoder = msgspec.json.Encoder()


class TimelinesHandler(BaseHandler):
    def __init__(
        self,
        runtime_settings: RuntimeSettings,
        client: redis.Redis | None = None,
        settings: TimelinesSettings | None = None,
    ) -> None:
        self.settings = settings or load_settings(TimelinesSettings)
        self.event_time_bound = EventTimeBound(load_settings(EventTimeSettings).event_time_skew_s)
        self.client = client or store_client(runtime_settings)
        self.timelines = TimelineStore(self.client, self.settings.timeline_cap)
        self._replace_who_to_follow = self.client.register_script(_REPLACE_IF_NOT_OLDER)
        self._topic = runtime_settings.topic(RECOMMENDATIONS)
        self._readiness = StoreReadiness(self.client)
        self.consumed = 0
        self._last_notice = time.monotonic()
        log.info(
            "timelines: waiting for recommendations on %s, produced by the Airflow"
            " recommendations DAG (hourly); nothing is merged until it runs",
            self._topic,
        )

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {self._topic: Recommendation}

    def store_ready(self) -> bool:
        return self._readiness()

    def tick(self, outbox: Outbox) -> None:
        if self.consumed:
            return
        now = time.monotonic()
        if now - self._last_notice >= self.settings.timelines_idle_notice_s:
            self._last_notice = now
            log.info(IDLE_NOTICE, self._topic)

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        pipe = self.client.pipeline(transaction=False)
        merged: list[tuple[int, list[int]]] = []
        limit = self.event_time_bound.limit()
        for record in records:
            recommendation: Recommendation = record.event
            # "Replace if not older" compares event times: a far-future one would pin
            # the entry forever.
            if recommendation.event_time.timestamp() > limit:
                outbox.dead_letter(
                    record,
                    FUTURE_REASON,
                    self.event_time_bound.describe(recommendation.event_time),
                    EVENT_TIME_FIELD,
                )
                continue
            if recommendation.kind is RecommendationKind.TWEETS:
                tweet_ids = [item.item_id for item in recommendation.items]
                self.timelines.merge(pipe, recommendation.user_id, tweet_ids)
                merged.append((recommendation.user_id, tweet_ids))
            else:
                entries = [
                    WhoToFollowEntry(item.item_id, item.score, item.reason)
                    for item in recommendation.items
                    if item.item_id != recommendation.user_id
                ]
                self._replace_who_to_follow(
                    keys=[keys.who_to_follow(recommendation.user_id)],
                    args=[
                        int(recommendation.event_time.timestamp() * 1000),
                        _entries_encoder.encode(entries),
                    ],
                    client=pipe,
                )
        pipe.execute()
        # Only after the merge is durable: a client told "new tweets" must find them when
        # it reads the timeline. A failure here retries the (idempotent) batch.
        if merged:
            live = self.client.pipeline(transaction=False)
            for user_id, tweet_ids in merged:
                publish_timeline(live, user_id, tweet_ids)
            live.execute()
        if not self.consumed and records:
            log.info("timelines: first recommendations consumed (%d)", len(records))
        self.consumed += len(records)

    def close(self) -> None:
        self.client.close()
