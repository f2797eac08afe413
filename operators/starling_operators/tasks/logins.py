"""login_events: flag suspicious logins and refresh the user's recommendations, for the
logins that fired the asset watcher.

History lives in the store per user: countries of successful logins, and failed attempts
(by event id, scored by time). Each login's verdict is saved under its event id before
anything is published, so a re-run (or a redelivered message) repeats the same verdict
and the same notification id instead of judging against history it already updated.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from starling.events import EventError, Notification, NotificationKind, UserLogin, decode_as
from starling.topics import LOGINS, NOTIFICATIONS, RECOMMENDATIONS
from starling_operators import kafka, settings, store
from starling_operators.analytics import (
    FAILURE_BURST_WINDOW,
    assess_login,
    describe_login_alert,
)
from starling_operators.connection import kafka_config, store_client
from starling_operators.kafka import KafkaRecord
from starling_operators.publish import publish_events
from starling_operators.records import (
    DeadLetter,
    dead_letter_message,
    derived_event_id,
    dlq_topic,
)
from starling_operators.tasks.recommendations import (
    build_recommendations,
    graph_for,
    load_snapshot,
)

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

PURPOSE = "login-events"
# A verdict outlives any redelivery or re-run of its login.
VERDICT_TTL_S = 30 * 24 * 3600


def payloads_from_asset_events(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The watcher's payloads out of `triggering_asset_events` (each asset event's extra is
    `{"from_trigger": True, "payload": <apply_function result>}`)."""
    payloads = []
    for event in events:
        extra = getattr(event, "extra", None) or {}
        payload = extra.get("payload")
        if isinstance(payload, dict):
            payloads.append(payload)
    return payloads


def _record(payload: Mapping[str, Any]) -> KafkaRecord:
    def raw(field: str) -> bytes | None:
        value = payload.get(field)
        return base64.b64decode(value) if value is not None else None

    return KafkaRecord(
        topic=str(payload.get("topic", settings.topic(LOGINS))),
        partition=int(payload.get("partition", -1)),
        offset=int(payload.get("offset", -1)),
        timestamp_ms=int(payload.get("timestamp_ms", 0)),
        key=raw("key"),
        value=raw("value"),
    )


def _verdict(client: redis.Redis, login: UserLogin) -> list[str]:
    verdict_key = store.key("login", "verdict", login.event_id)
    saved = client.get(verdict_key)
    if saved is not None:
        return list(msgspec.json.decode(saved, type=list[str]))
    countries_key = store.key("login", "countries", login.user_id)
    failures_key = store.key("login", "failures", login.user_id)
    at = login.event_time.timestamp()
    failures = 0
    if not login.success:
        client.zadd(failures_key, {str(login.event_id): at})
        failures = int(client.zcount(failures_key, at - FAILURE_BURST_WINDOW.total_seconds(), at))
    members: Any = client.smembers(countries_key)
    known = {c.decode() if isinstance(c, bytes) else str(c) for c in members}
    reasons = assess_login(login, known, failures)
    pipe = client.pipeline(transaction=True)
    pipe.set(verdict_key, msgspec.json.encode(reasons), nx=True, ex=VERDICT_TTL_S)
    if login.success:
        pipe.sadd(countries_key, login.country)
    else:
        # Keep only the window the burst rule looks at.
        pipe.zremrangebyscore(failures_key, "-inf", at - FAILURE_BURST_WINDOW.total_seconds())
    pipe.execute()
    # Another run may have judged it first (SET NX lost): use its verdict.
    saved = client.get(verdict_key)
    return list(msgspec.json.decode(saved, type=list[str])) if saved is not None else reasons


def handle_logins(
    payloads: Iterable[Mapping[str, Any]],
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    config = kafka_config(kafka_conn_id)
    logins: list[UserLogin] = []
    dead: list[DeadLetter] = []
    for payload in payloads:
        record = _record(payload)
        try:
            logins.append(decode_as(record.value or b"", UserLogin))
        except EventError as error:
            dead.append(DeadLetter(record, error))
    if dead:
        kafka.produce_all(
            config,
            dlq_topic(settings.topic(LOGINS)),
            [dead_letter_message(d, f"{settings.SERVICE_NAME}:{PURPOSE}") for d in dead],
        )
    logins.sort(key=lambda login: (login.event_time, str(login.event_id)))

    client = store_client(store_conn_id)
    try:
        alerts = []
        for login in logins:
            reasons = _verdict(client, login)
            if reasons:
                alerts.append(
                    Notification(
                        event_id=derived_event_id("login-alert", login.event_id),
                        schema_version=Notification.SCHEMA_VERSION,
                        event_time=login.event_time,
                        recipient_id=login.user_id,
                        kind=NotificationKind.ACCOUNT_ACTIVITY,
                        source_event_id=login.event_id,
                        message=describe_login_alert(login, reasons),
                    )
                )
        refreshed = refresh_recommendations(client, logins)
    finally:
        client.close()
    publish_events(config, NOTIFICATIONS, alerts)
    publish_events(config, RECOMMENDATIONS, refreshed)
    return {
        "logins": len(logins),
        "invalid": len(dead),
        "alerts": [str(a.source_event_id) for a in alerts],
        "recommendations": len(refreshed),
    }


def refresh_recommendations(client: redis.Redis, logins: Iterable[UserLogin]) -> list[Any]:
    """Fresh recommendations for each user who logged in successfully, from the current
    graph and the newest tweet-candidate snapshot; ids derive from the login."""
    latest: dict[int, UserLogin] = {}
    for login in logins:
        if login.success:
            latest[login.user_id] = login
    if not latest:
        return []
    following, excluded = graph_for(client, list(latest))
    candidates = load_snapshot(client)
    events = []
    for user, login in sorted(latest.items()):
        when: datetime = login.event_time
        events += build_recommendations(
            user,
            when,
            following,
            excluded.get(user, set()),
            candidates,
            ("login", login.event_id),
        )
    return events
