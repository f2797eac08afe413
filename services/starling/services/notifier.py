"""Notifier: dedupe, filter, cap and deliver notifications (in-app and push), with receipts.

Candidates come from `notifications` (mentions and replies from ingestion, account
activity from Airflow) and from `user.interactions` (likes, retweets, quotes, follows of
someone's content or account). The notifier also keeps the social graph in the store
current from follow/unfollow/block/mute interactions: it already reads them, and it
needs blocks and mutes for filtering.

Each candidate is decided once, atomically, in the store (`NotificationStore.decide`):
duplicate of an earlier candidate (same recipient, kind and source event)? opted out?
actor blocked or muted by the recipient? over the per-recipient fatigue cap for the
window? If it passes, it is put in the in-app inbox and an in-app receipt is written in
the same step. Push goes to an HTTP webhook afterwards, with a timeout and a bounded
number of attempts, carrying the notification id as `Idempotency-Key`; its outcome is
recorded as a second receipt. A redelivered candidate whose push was not confirmed is
pushed again; one that was is not.

Blocks beat notifications by event time, not arrival order. A block is keyed by the
blocker, the like it must stop by the liker: different partitions, maybe different
replicas, any order. So (1) a batch's graph changes are applied before its candidates,
(2) block/mute changes are logged with their event times and a candidate is filtered when
its actor was blocked/muted by the recipient at the candidate's event time (an unblock
is logged too: later likes are delivered again), and (3) a candidate with an actor is
held for `settle_ms` (`STARLING_NOTIFY_SETTLE_MS`, default 3 s) in the store before it
is decided, delivered, announced live and pushed, so a block that is read up to that long
after the like still stops it. The guarantee: a notification whose event time is after a
block's is never delivered if the block reaches the notifier no later than `settle_ms`
after the notification does (partition lag within the group under that); the cost is
that much latency on every notification with an actor. Nothing is ever retracted: a
notification is not delivered before it is decided, which is why holding is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import redis
from pydantic import Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from starling.events import (
    InteractionAction,
    Notification,
    NotificationKind,
    UserInteraction,
)
from starling.runtime.config import RuntimeSettings, load_settings
from starling.runtime.handler import BaseHandler, Outbox, Record
from starling.services.common import StoreReadiness, derived_id, store_client
from starling.store.graph import apply_interaction
from starling.store.live import publish_notification
from starling.store.notifications import (
    DEFAULT_INBOX_CAP,
    DELIVERED_STATUSES,
    DeliveryStatus,
    InboxEntry,
    NotificationStore,
)
from starling.topics import INTERACTIONS, NOTIFICATIONS

log = logging.getLogger("starling.notifier")

# Default settle delay: above the lag between the interactions topic's partitions of one
# healthy consumer group (sub-second, batches of a few hundred ms) with a wide margin.
DEFAULT_SETTLE_MS = 3000
# Held candidates decided per store round trip, and how long a claim stays with a replica
# before another may take the candidate over (a replica that died mid-release).
_RELEASE_BATCH = 500
_HOLD_LEASE_MS = 30_000

INTERACTION_KINDS: Mapping[InteractionAction, NotificationKind] = {
    InteractionAction.LIKE: NotificationKind.LIKE,
    InteractionAction.RETWEET: NotificationKind.RETWEET,
    InteractionAction.QUOTE: NotificationKind.QUOTE,
    InteractionAction.FOLLOW: NotificationKind.FOLLOW,
}


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STARLING_NOTIFY_", extra="ignore", frozen=True)

    fatigue_cap: int = Field(default=50, ge=1)
    fatigue_window_s: int = Field(default=3600, ge=1)
    inbox_cap: int = Field(default=DEFAULT_INBOX_CAP, ge=1)
    # The push gateway; push is off when unset.
    push_url: HttpUrl | None = None
    push_timeout_s: float = Field(default=2.0, gt=0, le=60)
    push_attempts: int = Field(default=3, ge=1, le=10)
    # How long a candidate with an actor waits before it is decided (wall clock, from
    # when the notifier reads it), so that a block or mute with an earlier event time,
    # travelling on another partition, can still arrive and stop it. 0 decides at once
    # (and then only blocks already applied are honoured). Every such notification is
    # this much (plus up to a second) later in the inbox, on the live stream and on push.
    settle_ms: int = Field(default=DEFAULT_SETTLE_MS, ge=0, le=60_000)


def delivery_id(recipient: int, kind: NotificationKind, source_event_id: Any) -> str:
    """The notification id: one per recipient, kind and cause, whoever reports it."""
    return str(derived_id("delivery", recipient, kind.value, source_event_id))


def event_ms(event: Notification | UserInteraction) -> int:
    return int(event.event_time.timestamp() * 1000)


def candidate_from_notification(event: Notification) -> tuple[int, InboxEntry]:
    return event.recipient_id, InboxEntry(
        id=delivery_id(event.recipient_id, event.kind, event.source_event_id),
        kind=event.kind.value,
        time_ms=event_ms(event),
        source_event_id=str(event.source_event_id),
        actor_id=event.actor_id,
        tweet_id=event.tweet_id,
        message=event.message,
    )


def candidate_from_interaction(event: UserInteraction) -> tuple[int, InboxEntry] | None:
    """Likes, retweets, quotes and follows notify their target, never the actor."""
    kind = INTERACTION_KINDS.get(event.action)
    if kind is None or event.actor_id == event.target_user_id:
        return None
    return event.target_user_id, InboxEntry(
        id=delivery_id(event.target_user_id, kind, event.event_id),
        kind=kind.value,
        time_ms=event_ms(event),
        source_event_id=str(event.event_id),
        actor_id=event.actor_id,
        tweet_id=event.tweet_id,
    )


class _RetryablePushError(Exception):
    """The push gateway answered 429 or 5xx: worth another attempt."""


class PushClient:
    """POSTs one notification to the push webhook; True when it was accepted (2xx)."""

    def __init__(self, url: str, timeout_s: float, attempts: int) -> None:
        self.url = url
        self.attempts = attempts
        self._client = httpx.Client(timeout=timeout_s)

    def push(self, recipient: int, entry: InboxEntry) -> tuple[bool, str]:
        body = {
            "id": entry.id,
            "recipient_id": recipient,
            "kind": entry.kind,
            "actor_id": entry.actor_id,
            "tweet_id": entry.tweet_id,
            "message": entry.message,
            "time_ms": entry.time_ms,
        }
        retrying = Retrying(
            retry=retry_if_exception_type((httpx.TransportError, _RetryablePushError)),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._client.post(
                        self.url, json=body, headers={"Idempotency-Key": entry.id}
                    )
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _RetryablePushError(f"HTTP {response.status_code}")
        except (httpx.TransportError, _RetryablePushError) as error:
            return False, f"{type(error).__name__}: {error}"[:200]
        if response.is_success:
            return True, f"HTTP {response.status_code}"
        return False, f"HTTP {response.status_code}"  # refused: retrying will not help

    def close(self) -> None:
        self._client.close()


class NotifierHandler(BaseHandler):
    def __init__(
        self,
        runtime_settings: RuntimeSettings,
        client: redis.Redis | None = None,
        settings: NotifierSettings | None = None,
    ) -> None:
        self.settings = settings or load_settings(NotifierSettings)
        self.client = client or store_client(runtime_settings)
        self.store = NotificationStore(
            self.client,
            fatigue_cap=self.settings.fatigue_cap,
            fatigue_window_s=self.settings.fatigue_window_s,
            inbox_cap=self.settings.inbox_cap,
        )
        self.push_client = (
            PushClient(
                str(self.settings.push_url),
                self.settings.push_timeout_s,
                self.settings.push_attempts,
            )
            if self.settings.push_url is not None
            else None
        )
        self._notifications_topic = runtime_settings.topic(NOTIFICATIONS)
        self._interactions_topic = runtime_settings.topic(INTERACTIONS)
        self._readiness = StoreReadiness(self.client)
        self.decisions: dict[str, int] = {}

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {
            self._notifications_topic: Notification,
            self._interactions_topic: UserInteraction,
        }

    def store_ready(self) -> bool:
        return self._readiness()

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        # Graph changes first, each with its event time: a block later in the batch than
        # a like it must stop is already logged when the like is decided (or held).
        for record in records:
            event = record.event
            if isinstance(event, UserInteraction):
                apply_interaction(
                    pipe, event.action, event.actor_id, event.target_user_id, event_ms(event)
                )
        candidates: list[tuple[int, InboxEntry]] = []
        in_batch: set[str] = set()
        settle_ms = self.settings.settle_ms
        for record in records:
            event = record.event
            if isinstance(event, Notification):
                candidate: tuple[int, InboxEntry] | None = candidate_from_notification(event)
            else:
                candidate = candidate_from_interaction(event)
            if candidate is None or candidate[1].id in in_batch:
                # A repeat within the batch would read the first one's state before its
                # push is recorded, and push twice.
                continue
            in_batch.add(candidate[1].id)
            recipient, entry = candidate
            if settle_ms and entry.actor_id is not None:
                # Only a candidate with an actor can be stopped by a block or mute.
                self.store.hold(pipe, recipient, entry, now_ms + settle_ms)
            else:
                candidates.append(candidate)
        if len(pipe):
            # Durable before the batch's offsets are committed: a held candidate survives
            # a crash in `ntf:held`, and any replica releases it.
            pipe.execute()
        self._decide_and_deliver(candidates, now_ms)
        self._release_due()

    def tick(self, outbox: Outbox) -> None:
        # Held candidates come due with or without traffic.
        self._release_due()

    def _release_due(self) -> None:
        while True:
            now_ms = int(time.time() * 1000)
            claimed = self.store.claim_due(now_ms, _RELEASE_BATCH, _HOLD_LEASE_MS)
            if not claimed:
                return
            self._decide_and_deliver([(r, e) for _m, r, e in claimed], now_ms)
            pipe = self.client.pipeline(transaction=False)
            self.store.release(pipe, [member for member, _r, _e in claimed])
            pipe.execute()
            if len(claimed) < _RELEASE_BATCH:
                return

    def _decide_and_deliver(self, candidates: list[tuple[int, InboxEntry]], now_ms: int) -> None:
        if not candidates:
            return
        push_enabled = self.push_client is not None
        pipe = self.client.pipeline(transaction=False)
        for recipient, entry in candidates:
            self.store.decide(pipe, recipient, entry, push_enabled=push_enabled, now_ms=now_ms)
        results = pipe.execute()
        to_push: list[tuple[int, InboxEntry]] = []
        live = self.client.pipeline(transaction=False)
        for raw, (recipient, entry) in zip(results, candidates, strict=True):
            status = DeliveryStatus(raw.decode() if isinstance(raw, bytes) else raw)
            self.decisions[status.value] = self.decisions.get(status.value, 0) + 1
            if status in DELIVERED_STATUSES:
                # The script returns the earlier status for a duplicate, so a redelivered
                # batch announces again; the entry's id lets clients drop the repeat.
                publish_notification(live, recipient, entry)
            if status is DeliveryStatus.PUSH_PENDING:
                to_push.append((recipient, entry))
        if len(live):
            # After the inbox write is durable, before the (slow, remote) push.
            live.execute()
        if to_push:
            self._push(to_push)

    def _push(self, notifications: list[tuple[int, InboxEntry]]) -> None:
        assert self.push_client is not None
        pipe = self.client.pipeline(transaction=False)
        for recipient, entry in notifications:
            ok, detail = self.push_client.push(recipient, entry)
            if not ok:
                log.warning("push of %s to user %d failed: %s", entry.id, recipient, detail)
            self.store.record_push(pipe, recipient, entry.id, ok, detail, int(time.time() * 1000))
        pipe.execute()

    def close(self) -> None:
        if self.push_client is not None:
            self.push_client.close()
        self.client.close()
