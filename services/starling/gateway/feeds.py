"""The two sources of live updates, each a thread that hands updates to the event loop.

* Trends: a Kafka consumer over every partition of `trends`, from the end (a client
  connecting now wants what trends from now; the current list is `GET /v1/trends`).
  Partitions are assigned, not subscribed: every pod must see every trend, and the
  access map grants the gateway exactly one literal group (`starling-gateway`), which
  pods using `assign()` share without joining it (no commits, no rebalances).
* Per-user updates: one PSUBSCRIBE to `live:user:*` in the store, published by the
  timelines and notifier services after their durable writes; on the same connection a
  SUBSCRIBE to `live:tweets`, where ingestion announces each fanned-out batch once (the
  gateway routes it to followers, `starling.gateway.follows`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import redis
from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from starling.events import EventError, Trend, decode_as, encode
from starling.store import keys
from starling.store.live import (
    NotificationUpdate,
    decode_new_tweets,
    decode_update,
    encode_update,
)

log = logging.getLogger("starling.gateway.feeds")

_RETRY_S = 1.0


class Feed:
    """A daemon thread running `_run` until `stop()`; updates go to `deliver` on the loop."""

    name = "feed"

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[str], None]) -> None:
        self._loop = loop
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"feed-{self.name}", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _guarded(self) -> None:
        while not self._stop.is_set():
            try:
                self._run()
            except Exception:
                # A feed outlives its source's outages: live updates pause, requests go on.
                log.exception("%s feed failed; restarting in %g s", self.name, _RETRY_S)
                self._on_error(self.name)
                self._stop.wait(_RETRY_S)

    def _run(self) -> None:
        raise NotImplementedError

    def _hand_over(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed under us: shutting down
            self._stop.set()


class TrendFeed(Feed):
    name = "trends"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_error: Callable[[str], None],
        consumer_config: dict[str, Any],
        topic: str,
        deliver: Callable[[bytes], None],
    ) -> None:
        super().__init__(loop, on_error)
        self._config = consumer_config
        self._topic = topic
        self._deliver = deliver

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            partitions = self._partitions(consumer)
            if partitions is None:
                return
            consumer.assign([TopicPartition(self._topic, p, OFFSET_END) for p in partitions])
            self.ready.set()
            log.info("trends feed: %d partitions of %s from the end", len(partitions), self._topic)
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.5):
                    if message.error() is not None:
                        log.warning("trends feed: %s", message.error())
                        continue
                    data = self._data(message.value())
                    if data is not None:
                        self._hand_over(self._deliver, data)
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int] | None:
        while not self._stop.is_set():
            try:
                topic = consumer.list_topics(self._topic, timeout=5.0).topics.get(self._topic)
            except KafkaException as error:
                log.warning("trends feed: no metadata for %s yet: %s", self._topic, error)
                topic = None
            if topic is not None and topic.error is None and topic.partitions:
                return sorted(topic.partitions)
            self._stop.wait(_RETRY_S)
        return None

    def _data(self, value: bytes | None) -> bytes | None:
        """The `trend` event's data (the hub frames it with a resumable id)."""
        try:
            trend = decode_as(value or b"", Trend)
        except EventError as error:
            # Not ours to dead-letter: the trends service validated what it produced; a
            # foreign record is skipped (and counted), never forwarded to clients.
            log.warning("trends feed: skipped a record that is not a trend: %s", error)
            self._on_error(self.name)
            return None
        # Re-encoded, so the data line is compact single-line JSON whatever was produced.
        return encode(trend)


class LiveFeed(Feed):
    name = "live"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_error: Callable[[str], None],
        client: redis.Redis,
        deliver: Callable[[int, str, bytes], None],
        deliver_tweets: Callable[[list[tuple[int, int]]], None],
    ) -> None:
        super().__init__(loop, on_error)
        self._client = client
        self._deliver = deliver
        self._deliver_tweets = deliver_tweets

    def _run(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        tweets_channel = keys.LIVE_TWEETS_CHANNEL.encode()
        try:
            pubsub.psubscribe(keys.LIVE_CHANNEL_PATTERN)
            pubsub.subscribe(keys.LIVE_TWEETS_CHANNEL)
            self.ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["channel"] == tweets_channel:
                    tweets = self._new_tweets(message["data"])
                    if tweets:
                        self._hand_over(self._deliver_tweets, tweets)
                    continue
                user_id = keys.user_of_live_channel(message["channel"])
                if user_id is None:
                    continue
                framed = self._frame(message["data"])
                if framed is not None:
                    self._hand_over(self._deliver, user_id, *framed)
        finally:
            self.ready.clear()
            pubsub.close()

    def _new_tweets(self, data: bytes) -> list[tuple[int, int]] | None:
        try:
            return decode_new_tweets(data).tweets
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("live feed: skipped a malformed new-tweets message: %s", error)
            self._on_error(self.name)
            return None

    def _frame(self, data: bytes) -> tuple[str, bytes] | None:
        """(event name, event data) of a published update (the hub frames it)."""
        try:
            update = decode_update(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("live feed: skipped a malformed update: %s", error)
            self._on_error(self.name)
            return None
        if isinstance(update, NotificationUpdate):
            return "notification", encode_update(update)
        return "timeline", encode_update(update)
