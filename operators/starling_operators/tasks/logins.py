"""login_events: flag suspicious logins and refresh the user's recommendations, for the
logins that fired the asset watcher.

Both versions of `UserLogin` are judged alike: v1 (client-posted) and v2 (the identity
service's record of every attempt, with an outcome; a rate-limited attempt is a failure).
History lives in the store: per user, the countries of successful logins; per account
(user id, or the name tried when it matched none) and per client address, the failed
attempts of the burst window (by event id, scored by time). Each login's verdict is saved
under its event id before anything is published, so a re-run (or a redelivered message)
repeats the same verdict and the same notification ids instead of judging against history
it already updated.
Once published, a login is marked handled: the sweep's look-back and later runs that see
the same asset event again skip it.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from starling.events import EventError, Notification, NotificationKind, UserLogin, decode_as
from starling.topics import LOGINS, NOTIFICATIONS, RECOMMENDATIONS
from starling_operators import kafka, settings, store
from starling_operators.analytics import (
    LoginAssessment,
    LoginRules,
    assess_login,
    describe_address_alert,
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
# The judging lock outlives no task (tasks time out at 5 minutes) and is waited for about
# as long before the task fails and retries.
LOCK_TTL_S = 300
LOCK_WAIT_S = 240


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


class _SavedVerdict(msgspec.Struct, frozen=True):
    reasons: list[str]
    address_targets: list[int] = []


def _load_verdict(saved: bytes | str) -> LoginAssessment:
    # Verdicts saved before address bursts existed are a bare list of reasons.
    verdict = msgspec.json.decode(saved, type=list[str] | _SavedVerdict)
    if isinstance(verdict, list):
        return LoginAssessment(tuple(verdict))
    return LoginAssessment(tuple(verdict.reasons), tuple(verdict.address_targets))


def _address_member(login: UserLogin) -> str:
    # The account rides along in the member, so the address's window says whom it tried.
    return f"{login.event_id}/{login.user_id if login.user_id is not None else ''}"


def _earlier_accounts(members: Iterable[Any], own: str) -> list[int | None]:
    accounts: list[int | None] = []
    for raw in members:
        member = raw.decode() if isinstance(raw, bytes) else str(raw)
        if member == own:
            continue
        account = member.rpartition("/")[2]
        accounts.append(int(account) if account else None)
    return accounts


def _verdict(client: redis.Redis, login: UserLogin, rules: LoginRules) -> LoginAssessment:
    verdict_key = store.key("login", "verdict", login.event_id)
    saved = client.get(verdict_key)
    if saved is not None:
        return _load_verdict(saved)
    at = login.event_time.timestamp()
    since = at - rules.window.total_seconds()
    # Failure windows are kept a little past the window (by the clock) and then dropped, so
    # an address seen once does not stay in the store.
    keep_s = int(rules.window.total_seconds()) * 2
    account_key = store.key("login", "failures", login.account_key)
    address_key = store.key("login", "address-failures", login.ip)
    account_failures = 0
    earlier_from_address: list[int | None] = []
    if not login.success:
        # Added before counting, so a retry after a crash counts the same members again.
        member = _address_member(login)
        pipe = client.pipeline(transaction=True)
        pipe.zadd(account_key, {str(login.event_id): at})
        pipe.zadd(address_key, {member: at})
        pipe.zcount(account_key, since, at)
        pipe.zrangebyscore(address_key, since, at)
        _, _, counted, members = pipe.execute()
        account_failures = int(counted)
        earlier_from_address = _earlier_accounts(members, member)
    known: set[str] = set()
    if login.success and login.user_id is not None:
        members_: Any = client.smembers(store.key("login", "countries", login.user_id))
        known = {c.decode() if isinstance(c, bytes) else str(c) for c in members_}
    verdict = assess_login(login, known, account_failures, earlier_from_address, rules)
    saved_verdict = _SavedVerdict(list(verdict.reasons), list(verdict.address_targets))
    pipe = client.pipeline(transaction=True)
    pipe.set(verdict_key, msgspec.json.encode(saved_verdict), nx=True, ex=VERDICT_TTL_S)
    if login.success:
        if login.user_id is not None and login.country is not None:
            pipe.sadd(store.key("login", "countries", login.user_id), login.country)
    else:
        # Keep only the window the burst rules look at.
        for key in (account_key, address_key):
            pipe.zremrangebyscore(key, "-inf", since)
            pipe.expire(key, keep_s)
    pipe.execute()
    # Another run may have judged it first (SET NX lost): use its verdict.
    saved = client.get(verdict_key)
    return _load_verdict(saved) if saved is not None else verdict


def handle_logins(
    payloads: Iterable[Mapping[str, Any]],
    replay: Iterable[Mapping[str, Any]] = (),
    kafka_conn_id: str = settings.KAFKA_CONN_ID,
    store_conn_id: str = settings.STORE_CONN_ID,
) -> dict[str, Any]:
    """Judge the logins of `payloads` (asset events of the watcher: the run's own and
    the recent ones the sweep looks back on) that no run has handled yet, and every login
    of `replay` (records given in the run's conf: handled again on purpose)."""
    config = kafka_config(kafka_conn_id)
    logins: list[UserLogin] = []
    dead: list[DeadLetter] = []
    replayed: set[str] = set()
    for payload, is_replay in [*((p, False) for p in payloads), *((p, True) for p in replay)]:
        record = _record(payload)
        try:
            login = decode_as(record.value or b"", UserLogin)
        except EventError as error:
            dead.append(DeadLetter(record, error))
            continue
        logins.append(login)
        if is_replay:
            replayed.add(str(login.event_id))
    if dead:
        kafka.produce_all(
            config,
            dlq_topic(settings.topic(LOGINS)),
            [dead_letter_message(d, f"{settings.SERVICE_NAME}:{PURPOSE}") for d in dead],
        )

    client = store_client(store_conn_id)
    try:
        # Runs may overlap (a sweep and an event's run): judging and marking happen under
        # one store lock, so a login is judged once and against history in order.
        with client.lock(
            store.key("login", "lock"), timeout=LOCK_TTL_S, blocking_timeout=LOCK_WAIT_S
        ):
            result = _judge_and_publish(client, config, logins, replayed)
    finally:
        client.close()
    return {**result, "invalid": len(dead)}


def _judge_and_publish(
    client: redis.Redis, config: Mapping[str, Any], logins: list[UserLogin], replayed: set[str]
) -> dict[str, Any]:
    # One login may reach several runs (its own, a sweep's look-back, a replay).
    unique = {str(login.event_id): login for login in logins}
    handled = _already_handled(client, [i for i in unique if i not in replayed])
    todo = sorted(
        (login for i, login in unique.items() if i not in handled),
        key=lambda login: (login.event_time, str(login.event_id)),
    )
    rules = LoginRules.from_env(os.environ)
    alerts = []
    for login in todo:
        verdict = _verdict(client, login, rules)
        alerts += login_notifications(login, verdict)
    refreshed = refresh_recommendations(client, todo)
    publish_events(config, NOTIFICATIONS, alerts)
    publish_events(config, RECOMMENDATIONS, refreshed)
    # Marked only after publishing: a task that dies in between handles the logins
    # again on retry, sending the same ids (consumers dedupe), never nothing.
    _mark_handled(client, [str(login.event_id) for login in todo])
    return {
        "logins": len(todo),
        "already_handled": len(handled),
        # The logins that caused notifications, each once.
        "alerts": list(dict.fromkeys(str(a.source_event_id) for a in alerts)),
        "notifications": len(alerts),
        "recommendations": len(refreshed),
    }


def login_notifications(login: UserLogin, verdict: LoginAssessment) -> list[Notification]:
    """The account-activity notifications of one judged login: one to its own account for
    what concerns it, one to every other account its address burst tried. Ids derive from
    the login (and the recipient), so a re-run sends the same ones."""
    notes = []
    if login.user_id is not None and verdict.reasons:
        notes.append(
            Notification(
                event_id=derived_event_id("login-alert", login.event_id),
                schema_version=Notification.SCHEMA_VERSION,
                event_time=login.event_time,
                recipient_id=login.user_id,
                kind=NotificationKind.ACCOUNT_ACTIVITY,
                source_event_id=login.event_id,
                message=describe_login_alert(login, verdict.reasons),
            )
        )
    for target in verdict.address_targets:
        if target == login.user_id:
            continue  # told in its own notification above
        notes.append(
            Notification(
                event_id=derived_event_id("address-alert", login.event_id, target),
                schema_version=Notification.SCHEMA_VERSION,
                event_time=login.event_time,
                recipient_id=target,
                kind=NotificationKind.ACCOUNT_ACTIVITY,
                source_event_id=login.event_id,
                message=describe_address_alert(login),
            )
        )
    return notes


def _already_handled(client: redis.Redis, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    flags: Any = client.mget([store.key("login", "handled", i) for i in event_ids])
    return {i for i, flag in zip(event_ids, flags, strict=True) if flag is not None}


def _mark_handled(client: redis.Redis, event_ids: list[str]) -> None:
    if not event_ids:
        return
    pipe = client.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.set(store.key("login", "handled", event_id), b"1", ex=VERDICT_TTL_S)
    pipe.execute()


def refresh_recommendations(client: redis.Redis, logins: Iterable[UserLogin]) -> list[Any]:
    """Fresh recommendations for each user who logged in successfully, from the current
    graph and the newest tweet-candidate snapshot; ids derive from the login. An attempt
    that matched no account has nobody to recommend to."""
    latest: dict[int, UserLogin] = {}
    for login in logins:
        if login.success and login.user_id is not None:
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
