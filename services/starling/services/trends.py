"""Trends: windowed hashtag counts from `tweets.enriched`, burst detection, `Trend` events.

State lives in the store, not in the process: counts per tumbling event-time window are
applied idempotently (deduplicated by tweet id) before offsets are committed, and the set
of open windows is kept there too, so a restarted (or replacement) instance carries on
exactly where the last one stopped.

A window closes once the watermark passes its end plus `lateness_s`. The watermark is
the minimum, over the partitions this instance reads that had data recently, of the
latest event time seen on each (partitions idle for `idle_partition_s` are left out, so
a quiet partition does not hold every window open). On close, trends are computed from
the stored counts (`bursts.detect`), published as `Trend` events with ids derived from
window and hashtag, and only then recorded as closed in the store; a crash in between
republishes identical events. Events arriving for a closed window are still counted,
and reported by the `starling_trends_late_events_total` metric, but do not reopen it.

Event time comes from clients, so it is bounded: a tweet further ahead of the clock
than `STARLING_EVENT_TIME_SKEW_S` (default 300 s) is dead-lettered
(`event_time_in_future`), and the watermark never passes wall clock plus that allowance,
so no single record closes the current window early. `Trend` events carry their
window's end as event time and as Kafka record timestamp.

Run one replica: counts are shared through the store, but each replica closes windows
by its own watermark.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from starling.events import Trend, TweetEnriched, encode
from starling.runtime.config import RuntimeSettings, load_settings
from starling.runtime.eventtime import (
    EVENT_TIME_FIELD,
    FUTURE_REASON,
    EventTimeBound,
    EventTimeSettings,
)
from starling.runtime.handler import BaseHandler, Outbox, Record, TopicPartitions
from starling.services.bursts import DetectionConfig, detect
from starling.services.common import StoreReadiness, derived_id, store_client
from starling.store import keys
from starling.store.trends import TrendEntry, TrendStore
from starling.topics import TRENDS, TWEETS_ENRICHED


class TrendsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STARLING_TRENDS_", extra="ignore", frozen=True)

    window_s: int = Field(default=300, ge=1, le=86_400)
    baseline_windows: int = Field(default=12, ge=1, le=1_000)
    min_history: int = Field(default=3, ge=1)
    min_count: int = Field(default=10, ge=1)
    threshold: float = Field(default=1.0, gt=0)
    top_n: int = Field(default=10, ge=1, le=100)
    lateness_s: float = Field(default=10.0, ge=0)
    idle_partition_s: float = Field(default=5.0, gt=0)

    def detection(self) -> DetectionConfig:
        return DetectionConfig(
            baseline_windows=self.baseline_windows,
            min_history=self.min_history,
            min_count=self.min_count,
            threshold=self.threshold,
            top_n=self.top_n,
        )


def window_of(event_time: datetime, window_s: int) -> int:
    """Start (Unix seconds) of the tumbling window holding `event_time`."""
    seconds = int(event_time.timestamp())
    return seconds - seconds % window_s


def baseline_windows(window_start: int, window_s: int, count: int, first: int | None) -> list[int]:
    """The previous windows the baseline averages, most recent first, never before `first`."""
    if first is None:
        return []
    previous = (window_start - step * window_s for step in range(1, count + 1))
    return [window for window in previous if window >= first]


class TrendsHandler(BaseHandler):
    def __init__(
        self,
        runtime_settings: RuntimeSettings,
        client: redis.Redis | None = None,
        settings: TrendsSettings | None = None,
        event_time: EventTimeSettings | None = None,
    ) -> None:
        self.settings = settings or load_settings(TrendsSettings)
        self.event_time_bound = EventTimeBound(
            (event_time or load_settings(EventTimeSettings)).event_time_skew_s
        )
        self.detection = self.settings.detection()
        self.client = client or store_client(runtime_settings)
        # Counts must outlive the longest baseline that reads them.
        retention = self.settings.window_s * (self.settings.baseline_windows + 2) + 3600
        self.store = TrendStore(self.client, retention_s=retention)
        self._input_topic = runtime_settings.topic(TWEETS_ENRICHED)
        self._trends_topic = runtime_settings.topic(TRENDS)
        self._readiness = StoreReadiness(self.client)
        # (topic, partition) -> (latest event time seen or None, wall clock of the last
        # event, or of the assignment while none came)
        self._partition_times: dict[tuple[str, int], tuple[float | None, float]] = {}
        self._open: set[int] | None = None  # loaded from the store on first use
        self._closed: set[int] = set()
        self.late_events = 0
        # Registered with the runtime's registry by `register_metrics` (one registry per
        # runtime, so several handlers can share a test process).
        self.late_events_metric = Counter(
            "starling_trends_late_events",
            "tweets counted for a window that had already closed (its trends were out)",
            registry=None,
        )

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.late_events_metric)

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {self._input_topic: TweetEnriched}

    def store_ready(self) -> bool:
        return self._readiness()

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        open_windows = self._open_windows()
        window_s = self.settings.window_s
        by_window: dict[int, list[tuple[int, Sequence[str]]]] = {}
        latest: dict[tuple[str, int], float] = {}
        limit = self.event_time_bound.limit()
        for record in records:
            tweet: TweetEnriched = record.event
            seconds = tweet.event_time.timestamp()
            if seconds > limit:
                outbox.dead_letter(
                    record,
                    FUTURE_REASON,
                    self.event_time_bound.describe(tweet.event_time),
                    EVENT_TIME_FIELD,
                )
                continue
            partition = (record.message.topic(), record.message.partition())
            if seconds > latest.get(partition, -1.0):
                latest[partition] = seconds
            if tweet.hashtags:
                window = int(seconds) - int(seconds) % window_s
                by_window.setdefault(window, []).append((tweet.tweet_id, tweet.hashtags))
        if by_window:
            pipe = self.client.pipeline(transaction=False)
            for window, tweets in by_window.items():
                self.store.count(pipe, window, tweets)
                if window not in self._closed:
                    pipe.sadd(keys.TRENDS_OPEN, window)
            pipe.execute()
        # Only once the counts are durable: a retried batch must not see them as done.
        now = time.monotonic()
        for window, tweets in by_window.items():
            if window in self._closed:
                self.late_events += len(tweets)
                self.late_events_metric.inc(len(tweets))
            else:
                open_windows.add(window)
        for partition, seconds in latest.items():
            previous = self._partition_times.get(partition)
            if previous is None or previous[0] is None or seconds > previous[0]:
                self._partition_times[partition] = (seconds, now)
            else:
                self._partition_times[partition] = (previous[0], now)

    def tick(self, outbox: Outbox) -> None:
        watermark = self.watermark()
        if watermark is None:
            return
        settings = self.settings
        horizon = watermark - settings.lateness_s - settings.window_s
        for window in sorted(self._open_windows()):
            if window > horizon:
                break
            if window in self._closed:
                continue
            entries = self.compute_window(window)
            for entry in entries:
                outbox.emit(
                    self._trends_topic,
                    entry.hashtag.encode(),
                    encode(_trend_event(entry)),
                    entry.window_end * 1000,
                )
            outbox.after_publish.append(_Closer(self, window, entries))

    def compute_window(self, window: int) -> list[TrendEntry]:
        """The window's trends from the stored counts (pure given the store)."""
        window_s = self.settings.window_s
        history_windows = baseline_windows(
            window, window_s, self.settings.baseline_windows, self.store.first_window()
        )
        counts, *history = self.store.window_counts([window, *history_windows])
        return [
            TrendEntry(
                hashtag=found.hashtag,
                count=found.count,
                expected=found.expected,
                score=found.score,
                rank=found.rank,
                window_start=window,
                window_end=window + window_s,
            )
            for found in detect(counts, history, self.detection)
        ]

    def mark_closed(self, window: int, entries: Sequence[TrendEntry]) -> None:
        self.store.close(window, entries)
        self._closed.add(window)
        self._open_windows().discard(window)

    def watermark(self) -> float | None:
        """None until every assigned partition has shown its first event or stayed idle
        for `idle_partition_s` since it was assigned; never past wall clock plus the
        event-time allowance, whatever event time a record claimed."""
        watermark = self._uncapped_watermark()
        if watermark is None:
            return None
        return min(watermark, self.event_time_bound.limit())

    def _uncapped_watermark(self) -> float | None:
        now = time.monotonic()
        idle_after = self.settings.idle_partition_s
        active: list[float] = []
        seen: list[float] = []
        for seconds, last_change in self._partition_times.values():
            if seconds is None:
                if now - last_change < idle_after:
                    return None  # it may still deliver older events
                continue
            seen.append(seconds)
            if now - last_change < idle_after:
                active.append(seconds)
        if active:
            return min(active)
        # Everything is quiet: what has arrived is all there is for now.
        return max(seen) if seen else None

    def partitions_assigned(self, partitions: TopicPartitions) -> None:
        now = time.monotonic()
        for partition in partitions:
            self._partition_times.setdefault(partition, (None, now))

    def partitions_revoked(self, partitions: TopicPartitions) -> None:
        for partition in partitions:
            self._partition_times.pop(partition, None)

    def _open_windows(self) -> set[int]:
        if self._open is None:
            members: Any = self.client.smembers(keys.TRENDS_OPEN)
            self._open = {int(member) for member in members}
            self._closed = set(self.store.closed_windows())
        return self._open

    def close(self) -> None:
        self.client.close()


class _Closer:
    """Records a window as closed once its trends are published (an outbox callback)."""

    def __init__(self, handler: TrendsHandler, window: int, entries: list[TrendEntry]) -> None:
        self.handler = handler
        self.window = window
        self.entries = entries

    def __call__(self) -> None:
        self.handler.mark_closed(self.window, self.entries)


def _trend_event(entry: TrendEntry) -> Trend:
    return Trend(
        event_id=derived_id("trend", entry.window_start, entry.hashtag),
        schema_version=Trend.SCHEMA_VERSION,
        event_time=datetime.fromtimestamp(entry.window_end, UTC),
        hashtag=entry.hashtag,
        window_start=datetime.fromtimestamp(entry.window_start, UTC),
        window_end=datetime.fromtimestamp(entry.window_end, UTC),
        count=entry.count,
        expected=entry.expected,
        score=entry.score,
        rank=entry.rank,
    )
