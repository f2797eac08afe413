"""login_events: the asset watcher's real `KafkaMessageQueueTrigger` fires on logins produced to
the real broker, and the DAG run processes exactly those records; verdicts checked against
a reference computed here and against the generator's injected anomalies."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from starling.events import (
    Notification,
    NotificationKind,
    Platform,
    Recommendation,
    RecommendationKind,
    UserLogin,
    decode_as,
    new_event,
)
from starling.loadgen import LoginAnomalyKind, TrafficConfig, TrafficGenerator
from starling.store.graph import load_graph
from starling.topics import LOGINS, NOTIFICATIONS, RECOMMENDATIONS
from starling_operators import kafka as kafka_helpers
from starling_operators.functions import login_message_payload
from starling_operators.records import event_message
from tests.airflow.conftest import load_namespace
from tests.airflow.test_recommendations_dag import reference_who_to_follow
from tests.airflow.traffic import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = 42


def login(country: str, success: bool, minutes: float) -> UserLogin:
    return new_event(
        UserLogin,
        event_time=datetime.now(UTC) - timedelta(minutes=30 - minutes),
        user_id=USER,
        success=success,
        ip="10.0.0.1",
        country=country,
        device_id="device-1",
        platform=Platform.IOS,
        failure_reason=None if success else "bad_password",
    )


async def fire(trigger: Any, times: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Run the trigger as the triggerer does, once per expected event: each run yields one
    TriggerEvent and stops; its consumer is closed before the next run joins the group."""
    payloads = []
    for _ in range(times):

        async def first_event() -> Any:
            async for event in trigger.run():
                return event
            raise AssertionError("trigger ended without an event")

        try:
            event = await asyncio.wait_for(first_event(), timeout)
        finally:
            await trigger.trigger.cleanup()
        payloads.append(event.payload)
    return payloads


def test_trigger_fires_on_real_logins_and_the_run_flags_the_new_country(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    bootstrap, prefix = starling_env["bootstrap"], starling_env["prefix"]
    generator = TrafficGenerator(TrafficConfig(seed=5, users=100))
    graph = generator.graph
    load_graph(redis_client, {user: graph.followers(user) for user in graph.user_ids})

    logins = [login("US", True, 0), login("US", True, 1), login("BR", True, 2)]
    topic = prefix + LOGINS
    kafka_helpers.produce_all(
        {"bootstrap.servers": bootstrap},
        topic,
        [*(event_message(e) for e in logins), kafka_helpers.OutgoingMessage(b"x", b"{oops")],
    )

    namespace = load_namespace("login_events.py")
    asset, dag = namespace["user_logins"], namespace["dag"]
    for task in dag.tasks:
        task.retries = 0
    trigger = asset.watchers[0].trigger
    assert trigger.serialize()[1]["topics"] == [topic]

    started = time.monotonic()
    payloads = asyncio.run(fire(trigger, len(logins) + 1))
    fire_seconds = time.monotonic() - started
    # Logins of one user share a partition, so they fire in order; the malformed record
    # (another key, another partition) fires too, marked for the DLQ.
    valid = [p["event_id"] for p in payloads if "error" not in p]
    assert valid == [str(e.event_id) for e in logins]
    assert sum("error" in p for p in payloads) == 1
    print(f"trigger fired {len(payloads)} times in {fire_seconds:.1f} s")

    # As the scheduler would: one run for the queued asset events, their payloads in it.
    run = dag.test(run_conf={"payloads": payloads})
    assert run.state == "success"

    notes = [
        decode_as(r.value or b"", Notification)
        for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
    ]
    assert [(n.recipient_id, n.kind, n.source_event_id) for n in notes] == [
        (USER, NotificationKind.ACCOUNT_ACTIVITY, logins[2].event_id)
    ]
    assert "BR" in notes[0].message
    dead = read_topic(bootstrap, topic + ".dlq")
    assert [r.value for r in dead] == [b"{oops"]

    recs = [
        decode_as(r.value or b"", Recommendation)
        for r in read_topic(bootstrap, prefix + RECOMMENDATIONS)
    ]
    following = {u: set(graph.following(u)) for u in graph.user_ids}
    expected = reference_who_to_follow(USER, following, set())
    wtf = [r for r in recs if r.kind is RecommendationKind.WHO_TO_FOLLOW]
    assert wtf, "a successful login refreshes who-to-follow"
    assert [i.item_id for i in wtf[-1].items] == [c for c, _ in expected]

    # Re-running the same records repeats the verdict and the notification id.
    rerun = dag.test(run_conf={"payloads": payloads})
    assert rerun.state == "success"
    again = [
        decode_as(r.value or b"", Notification)
        for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
    ]
    assert {n.event_id for n in again} == {notes[0].event_id}


class _Message:
    """The confluent-kafka Message accessors `login_message_payload` uses, over a record
    read back from the broker."""

    def __init__(self, record: kafka_helpers.KafkaRecord) -> None:
        self._record = record

    def value(self) -> bytes | None:
        return self._record.value

    def key(self) -> bytes | None:
        return self._record.key

    def topic(self) -> str:
        return self._record.topic

    def partition(self) -> int:
        return self._record.partition

    def offset(self) -> int:
        return self._record.offset

    def timestamp(self) -> tuple[int, int]:
        return 1, self._record.timestamp_ms


def reference_alerts(logins: list[UserLogin]) -> set[Any]:
    countries: dict[int, set[str]] = defaultdict(set)
    failures: dict[int, list[datetime]] = defaultdict(list)
    flagged = set()
    for event in sorted(logins, key=lambda e: (e.event_time, str(e.event_id))):
        if event.success:
            if countries[event.user_id] and event.country not in countries[event.user_id]:
                flagged.add(event.event_id)
            countries[event.user_id].add(event.country)
        else:
            failures[event.user_id].append(event.event_time)
            recent = [
                t
                for t in failures[event.user_id]
                if event.event_time - timedelta(minutes=10) <= t <= event.event_time
            ]
            if len(recent) == 5:
                flagged.add(event.event_id)
    return flagged


def test_loadgen_logins_flagged_like_the_reference_and_the_injected_anomalies(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    from starling_operators.tasks.logins import handle_logins

    generator = TrafficGenerator(
        TrafficConfig(
            seed=9,
            users=40,
            new_country_login_rate=0.05,
            failure_burst_rate=0.02,
            mix=(10.0, 10.0, 80.0),
            events_per_second=0.5,
        )
    )
    events = list(generator.events(3000))
    logins = [e for e in events if isinstance(e, UserLogin)]
    bootstrap, topic = starling_env["bootstrap"], starling_env["prefix"] + LOGINS
    kafka_helpers.produce_all(
        {"bootstrap.servers": bootstrap}, topic, [event_message(e) for e in logins]
    )
    payloads = [login_message_payload(_Message(r)) for r in read_topic(bootstrap, topic)]
    assert len(payloads) == len(logins)

    result = handle_logins(payloads)
    flagged = set(result["alerts"])
    assert flagged == {str(i) for i in reference_alerts(logins)}

    truth = generator.login_anomalies
    bursts = [
        a for a in truth if a.kind is LoginAnomalyKind.FAILURE_BURST and len(a.event_ids) >= 5
    ]
    assert bursts, "the generator injected failure bursts"
    failures_at: dict[int, list[datetime]] = defaultdict(list)
    for event in logins:
        if not event.success:
            failures_at[event.user_id].append(event.event_time)
    isolated = [
        b
        for b in bursts
        if not any(
            b.first_time - timedelta(minutes=10) <= t < b.first_time for t in failures_at[b.user_id]
        )
    ]
    assert isolated
    # A burst that starts with a clean window is flagged once (at its 5th attempt).
    for burst in isolated:
        assert len(flagged & {str(i) for i in burst.event_ids}) == 1, burst

    def countries_before(user: int, moment: datetime) -> set[str]:
        return {
            e.country for e in logins if e.user_id == user and e.success and e.event_time < moment
        }

    # An injected new-country login is flagged whenever the user has a login history that
    # does not include that country yet.
    new_country = [
        a
        for a in truth
        if a.kind is LoginAnomalyKind.NEW_COUNTRY
        and countries_before(a.user_id, a.first_time)
        and a.country not in countries_before(a.user_id, a.first_time)
    ]
    assert new_country
    for anomaly in new_country:
        assert str(anomaly.event_ids[0]) in flagged, anomaly
