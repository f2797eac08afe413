"""login_events: logins produced to the real broker start DAG runs through a real Airflow
(triggerer, scheduler, dag-processor, api-server), with verdicts checked against a
reference computed here and against the generator's injected anomalies."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from starling.events import (
    LoginOutcome,
    Notification,
    NotificationKind,
    Platform,
    Recommendation,
    RecommendationKind,
    UserLogin,
    decode_as,
    new_event,
)
from starling.harness.airflow import AirflowStack, kafka_connection
from starling.loadgen import LoginAnomalyKind, TrafficConfig, TrafficGenerator
from starling.store.graph import load_graph
from starling.topics import LOGINS, NOTIFICATIONS, RECOMMENDATIONS
from starling_operators import kafka as kafka_helpers
from starling_operators.records import event_message
from starling_operators.triggers import login_trigger_payload
from tests.airflow.conftest import DAGS
from tests.airflow.test_recommendations_dag import reference_who_to_follow
from tests.airflow.traffic import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = 42


def login(country: str, success: bool, minutes: float) -> UserLogin:
    """A v1 login (client-posted, as before the identity service)."""
    return UserLogin(
        event_id=uuid.uuid4(),
        schema_version=1,
        event_time=datetime.now(UTC) - timedelta(minutes=30 - minutes),
        user_id=USER,
        success=success,
        ip="10.0.0.1",
        country=country,
        device_id="device-1",
        platform=Platform.IOS,
        failure_reason=None if success else "bad_password",
    )


def sign_in(country: str, minutes: float) -> UserLogin:
    """A v2 successful sign-in (the identity service's record), country known."""
    return new_event(
        UserLogin,
        event_time=datetime.now(UTC) - timedelta(minutes=30 - minutes),
        user_id=USER,
        username=f"u{USER}",
        outcome=LoginOutcome.SUCCEEDED,
        success=True,
        ip="10.0.0.1",
        user_agent="Starling/4.2 (iPhone; iOS 18.1; Scale/3.00)",
        country=country,
    )


def produce(bootstrap: str, topic: str, messages: list[kafka_helpers.OutgoingMessage]) -> None:
    kafka_helpers.produce_all({"bootstrap.servers": bootstrap}, topic, messages)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (what the trigger has acknowledged)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        # A partition the group never committed on reports a negative sentinel: nothing read.
        return {tp.partition: max(tp.offset, 0) for tp in committed}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "starling-airflow-test-ends"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def asset_event_ids(af: AirflowStack) -> list[str]:
    """The login event ids carried by the stored asset events, one per fired trigger event."""
    rows = af.query("SELECT extra FROM asset_event ORDER BY id")
    return [json.loads(r["extra"])["payload"]["event_id"] for r in rows]


def finished_runs(af: AirflowStack) -> list[dict[str, Any]]:
    runs = af.dag_runs("login_events")
    return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []


def handled_logins(af: AirflowStack) -> int:
    """Logins judged by all login_events runs so far (each run's XCom counts its own)."""
    rows = af.query("SELECT value FROM xcom WHERE dag_id = 'login_events' AND key = 'return_value'")
    return sum(int(json.loads(r["value"])["logins"]) for r in rows)


def all_handled(af: AirflowStack, logins: int) -> bool:
    return (
        len(asset_event_ids(af)) == logins
        and bool(finished_runs(af))
        and handled_logins(af) == logins
    )


def test_logins_on_the_topic_run_the_dag_through_triggerer_and_scheduler(
    starling_env: dict[str, str], redis_server: Any, redis_client: Any, tmp_path: Path
) -> None:
    """No manual trigger and no dag.test(): the real triggerer, scheduler, dag-processor and
    api-server. Logins produced to the topic fire the asset watcher, the scheduler starts
    asset-triggered runs, the task flags the new-country login; a record that is not a login
    is dead-lettered by the trigger and starts nothing; offsets are committed after the
    asset events are stored, and a triggerer killed with SIGKILL loses no login."""
    bootstrap, prefix = starling_env["bootstrap"], starling_env["prefix"]
    topic = prefix + LOGINS
    group = f"starling-airflow-login-watcher-{prefix}"
    generator = TrafficGenerator(TrafficConfig(seed=5, users=100))
    graph = generator.graph
    load_graph(redis_client, {user: graph.followers(user) for user in graph.user_ids})

    # Only the login DAG: the hourly ones would run against empty topics meanwhile.
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "login_events.py").symlink_to(DAGS / "login_events.py")
    env = {
        "AIRFLOW_CONN_KAFKA_DEFAULT": kafka_connection(bootstrap, **{"group.id": group}),
        "AIRFLOW_CONN_STARLING_STORE": redis_server.url,
        "STARLING_TOPIC_PREFIX": prefix,
        # Airflow may hold an asset event back until the next one (see the DAG's doc); the
        # sweep that bounds that wait runs every minute here.
        "STARLING_LOGIN_SWEEP_MINUTES": "1",
    }
    started = time.monotonic()
    with AirflowStack.start(dags_folder=dags, env=env) as af:
        print(f"airflow stack healthy in {time.monotonic() - started:.1f} s")
        logins = [login("US", True, 0), login("US", True, 1), login("BR", True, 2)]
        produced = time.monotonic()
        produce(
            bootstrap,
            topic,
            [*(event_message(e) for e in logins), kafka_helpers.OutgoingMessage(b"x", b"{oops")],
        )
        af.wait_until(
            lambda: all_handled(af, len(logins)),
            timeout=150,
            what="three asset events, each login handled once by finished runs",
        )
        print(f"logins to finished runs in {time.monotonic() - produced:.1f} s")

        runs = finished_runs(af)
        assert "asset_triggered" in {r["run_type"] for r in runs}
        assert {r["state"] for r in runs} == {"success"}
        # Each login fired exactly one asset event, in order (one user, one partition);
        # the malformed record fired none.
        assert asset_event_ids(af) == [str(e.event_id) for e in logins]

        notes = [
            decode_as(r.value or b"", Notification)
            for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
        ]
        assert [(n.recipient_id, n.kind, n.source_event_id) for n in notes] == [
            (USER, NotificationKind.ACCOUNT_ACTIVITY, logins[2].event_id)
        ]
        assert "BR" in notes[0].message
        recs = [
            decode_as(r.value or b"", Recommendation)
            for r in read_topic(bootstrap, prefix + RECOMMENDATIONS)
        ]
        following = {u: set(graph.following(u)) for u in graph.user_ids}
        expected = reference_who_to_follow(USER, following, set())
        wtf = [r for r in recs if r.kind is RecommendationKind.WHO_TO_FOLLOW]
        assert wtf, "a successful login refreshes who-to-follow"
        assert [i.item_id for i in wtf[-1].items] == [c for c, _ in expected]

        dead = read_topic(bootstrap, topic + ".dlq")
        assert [r.value for r in dead] == [b"{oops"]
        headers = dict(dead[0].headers)
        assert headers["starling.error.kind"] == b"malformed"
        assert headers["starling.source.topic"] == topic.encode()
        assert headers["starling.service"] == b"login-watcher"
        # Everything read was acknowledged after its asset event was stored.
        af.wait_until(
            lambda: committed_offsets(bootstrap, group, topic) == end_offsets(bootstrap, topic),
            timeout=30,
            what="the watcher's group committed through the end of the topic",
        )

        # A triggerer crash: logins produced while it is down are picked up after restart,
        # each exactly once (nothing was committed past them).
        af.kill("triggerer")
        # v2 logins after v1 ones: one history, the same verdicts.
        later = [sign_in("BR", 3), sign_in("FR", 4)]
        produce(bootstrap, topic, [event_message(e) for e in later])
        af.restart("triggerer")
        af.wait_until(
            lambda: all_handled(af, len(logins) + len(later)),
            timeout=150,
            what="the logins produced while the triggerer was down, handled once",
        )
        assert asset_event_ids(af) == [str(e.event_id) for e in logins + later]
        assert {r["state"] for r in finished_runs(af)} == {"success"}
        notes = [
            decode_as(r.value or b"", Notification)
            for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
        ]
        assert sorted(str(n.source_event_id) for n in notes) == sorted(
            str(e.event_id) for e in (logins[2], later[1])
        ), "FR is new after US and BR; BR is known by then"


def reference_alerts(logins: list[UserLogin]) -> set[Any]:
    """The rules restated independently: new country; the 5th failure on an account in 10
    minutes; the 20th failure from an address in 10 minutes (and each later failure on an
    account that address had not tried in the window)."""
    window = timedelta(minutes=10)
    countries: dict[int, set[str]] = defaultdict(set)
    by_account: dict[str, list[datetime]] = defaultdict(list)
    by_address: dict[str, list[tuple[datetime, int | None]]] = defaultdict(list)
    flagged = set()
    for event in sorted(logins, key=lambda e: (e.event_time, str(e.event_id))):
        at = event.event_time
        if event.success:
            assert event.user_id is not None
            known = countries[event.user_id]
            if event.country is not None:
                if known and event.country not in known:
                    flagged.add(event.event_id)
                known.add(event.country)
            continue
        account = str(event.user_id) if event.user_id is not None else f"name:{event.username}"
        by_account[account].append(at)
        in_window = sum(at - window <= t <= at for t in by_account[account])
        account_burst = event.user_id is not None and in_window == 5
        earlier = [u for t, u in by_address[event.ip] if at - window <= t <= at]
        by_address[event.ip].append((at, event.user_id))
        tried = {u for u in earlier if u is not None}
        crossing = len(earlier) + 1 == 20 and bool(tried or event.user_id is not None)
        newly_tried = len(earlier) + 1 > 20 and event.user_id not in {*tried, None}
        if account_burst or crossing or newly_tried:
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
    payloads = [
        p for r in read_topic(bootstrap, topic) if (p := login_trigger_payload(r.value)) is not None
    ]
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
