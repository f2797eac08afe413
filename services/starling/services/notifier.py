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


def delivery_id(recipient: int, kind: NotificationKind, source_event_id: Any) -> str:
    """The notification id: one per recipient, kind and cause, whoever reports it."""
    return str(derived_id("delivery", recipient, kind.value, source_event_id))


def candidate_from_notification(event: Notification) -> tuple[int, InboxEntry]:
    return event.recipient_id, InboxEntry(
        id=delivery_id(event.recipient_id, event.kind, event.source_event_id),
        kind=event.kind.value,
        time_ms=int(event.event_time.timestamp() * 1000),
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
        time_ms=int(event.event_time.timestamp() * 1000),
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
        # Graph changes and decisions are queued in stream order in one pipeline, so a
        # block followed by a notification from the blocked account filters it.
        pipe = self.client.pipeline(transaction=False)
        decided: list[tuple[int, int, InboxEntry]] = []  # (result index, recipient, entry)
        push_enabled = self.push_client is not None
        now_ms = int(time.time() * 1000)
        in_batch: set[str] = set()
        for record in records:
            event = record.event
            if isinstance(event, Notification):
                candidate: tuple[int, InboxEntry] | None = candidate_from_notification(event)
            else:
                apply_interaction(pipe, event.action, event.actor_id, event.target_user_id)
                candidate = candidate_from_interaction(event)
            if candidate is not None and candidate[1].id not in in_batch:
                # A repeat within the batch would read the first one's state before its
                # push is recorded, and push twice.
                in_batch.add(candidate[1].id)
                recipient, entry = candidate
                decided.append((len(pipe), recipient, entry))
                self.store.decide(pipe, recipient, entry, push_enabled=push_enabled, now_ms=now_ms)
        if not len(pipe):
            return
        results = pipe.execute()
        to_push: list[tuple[int, InboxEntry]] = []
        live = self.client.pipeline(transaction=False)
        for index, recipient, entry in decided:
            raw = results[index]
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
