"""Grants equal use: every principal's code runs against a broker that enforces the access
map's ACLs, and every grant of the access map is one some run used.

The stack is `starling up --no-airflow`'s (`starling.harness.stack.Stack`): each stream
service, the gateway, the identity service and the traffic generator as its own process
and SCRAM principal, the StandardAuthorizer denying whatever no ACL allows. The DAGs run
under `dag.test()` as the `airflow` principal, over the same SASL_SSL listener. The
broker's authorizer log (audit on: allowed operations too, with the ACL that allowed each)
says which grants were used; a missing grant shows as a denial, a grant nothing used
fails the test unless `starling.access.UNUSED_GRANTS` gives the reason it is kept.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from starling.access import PRINCIPALS, UNUSED_GRANTS
from starling.events import (
    InteractionAction,
    LoginOutcome,
    Platform,
    TweetCreated,
    UserInteraction,
    UserLogin,
    encode,
    new_event,
)
from starling.harness.airflow import connections_env
from starling.harness.kafka import AuthorizerDecision, KafkaCluster
from starling.harness.stack import DEV_PASSWORD, Stack, UpOptions, prepare_data_dir
from starling.topics import (
    CATALOG,
    INTERACTIONS,
    LOGINS,
    NOTIFICATIONS,
    RECOMMENDATIONS,
    TRENDS,
    TWEETS,
    TWEETS_ENRICHED,
)
from starling_operators.triggers import login_trigger_payload
from tests.airflow.conftest import load_dag

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

# (principal, resource type, resource name, pattern type, operation), the access map's terms.
Grant = tuple[str, str, str, str, str]

# Not events of their topic: every reader of these topics must dead-letter them.
GARBAGE = b"not an event"
READ_TOPICS = (TWEETS, TWEETS_ENRICHED, RECOMMENDATIONS, NOTIFICATIONS, INTERACTIONS, LOGINS)


def access_map_grants() -> set[Grant]:
    catalog = CATALOG.for_cluster(1)
    return {
        (p.name, rule.resource_type, rule.resource_name, rule.pattern.value, op.name)
        for p in PRINCIPALS
        for rule in p.acl_rules(catalog)
        for op in rule.operations
    }


def used_grants(decisions: list[AuthorizerDecision]) -> set[Grant]:
    """The ACL behind each allowed operation of an access-map principal."""
    names = {f"User:{p.name}": p.name for p in PRINCIPALS}
    used: set[Grant] = set()
    for decision in decisions:
        if decision.allowed and decision.acl is not None and decision.principal in names:
            kind, name, pattern, operation = decision.acl
            # Kafka says PREFIXED where the access map (and Strimzi) say prefix.
            ours = {"LITERAL": "literal", "PREFIXED": "prefix"}[pattern]
            used.add((names[decision.principal], kind.lower(), name, ours, operation))
    return used


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1.0)


def post(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read() or b"{}")
        return result


def high_watermark(admin_bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": admin_bootstrap, "group.id": "acl-usage-probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def has_records(admin_bootstrap: str, topic: str) -> Callable[[], bool]:
    return lambda: high_watermark(admin_bootstrap, topic) > 0


def first_login_payload(admin_bootstrap: str) -> dict[str, Any]:
    """The login watcher's payload for the first valid login on the topic."""
    from confluent_kafka import Consumer

    from starling_operators.triggers import login_trigger_payload

    consumer = Consumer(
        {
            "bootstrap.servers": admin_bootstrap,
            "group.id": "acl-usage-probe",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([LOGINS])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                payload = login_trigger_payload(message.value())
                if payload is not None:
                    return payload
    finally:
        consumer.close()
    raise AssertionError(f"no valid login on {LOGINS}")


async def watch_logins_until_a_rejection(timeout: float = 60.0) -> None:
    """Run the watcher's shared-stream producer over `user.logins`: every record its
    filter would pass is acknowledged, the first it rejects is dead-lettered, then stop."""
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    from starling_operators.triggers import LoginStreamTrigger

    producer = LoginStreamTrigger.create_shared_stream_producer(
        {
            "topics": [LOGINS],
            "kafka_config_id": "kafka_default",
            "poll_timeout": 1.0,
            "dlq_topic": CATALOG.get(LOGINS).dlq_name,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        async for value, payload in producer.open_stream():
            rejected = login_trigger_payload(value) is None
            outcome = AdvanceOutcome(acked=0 if rejected else 1, failed=0, rejected=int(rejected))
            await producer.advance([AdvanceItem(payload, outcome)])
            if rejected:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the login watcher saw no record to reject")
    finally:
        await producer.aclose()


@pytest.fixture
def audited_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """`starling up --no-airflow`, with the broker's authorizer logging allowed operations."""
    start = KafkaCluster.start

    def audited(*args: Any, **kwargs: Any) -> KafkaCluster:
        return start(*args, **{**kwargs, "audit": True})

    monkeypatch.setattr(KafkaCluster, "start", staticmethod(audited))
    # Windows of seconds, not minutes, and a low bar for a burst, so trends publishes
    # within the test (`starling up` passes no STARLING_* of its own environment on).
    knobs = {
        "STARLING_TRENDS_WINDOW_S": "4",
        "STARLING_TRENDS_BASELINE_WINDOWS": "1",
        "STARLING_TRENDS_MIN_HISTORY": "1",
        "STARLING_TRENDS_MIN_COUNT": "1",
        "STARLING_TRENDS_LATENESS_S": "1",
    }
    base_env = Stack._base_env

    def tuned_env(self: Stack) -> dict[str, str]:
        return {**base_env(self), **knobs}

    monkeypatch.setattr(Stack, "_base_env", tuned_env)
    data_dir = tmp_path / "data"
    prepare_data_dir(data_dir, fresh=True)
    options = UpOptions(
        data_dir=data_dir, airflow=False, rate=30, users=50, gateway_port=0, identity_port=0
    )
    stack = Stack(options, say=lambda line: print(line, flush=True))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_every_grant_is_used_and_none_is_missing(
    audited_stack: Stack, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = audited_stack
    state = stack.state
    kafka = stack._kafka
    assert kafka is not None and kafka.audit

    # The identity service records sign-ins; the gateway produces what users post.
    token = post(
        f"{state.identity_url}/v1/sessions", {"username": "u11", "password": DEV_PASSWORD}
    )["access_token"]
    tweet = new_event(
        TweetCreated, tweet_id=991_001, author_id=11, text="acl #audit", platform=Platform.WEB
    )
    post(f"{state.gateway_url}/v1/events", json.loads(encode(tweet)), token)
    follow = new_event(
        UserInteraction, actor_id=11, action=InteractionAction.FOLLOW, target_user_id=12
    )
    post(f"{state.gateway_url}/v1/events", json.loads(encode(follow)), token)

    # A record that is not an event on every topic something reads: each reader's
    # dead-letter path runs (the harness's PLAINTEXT listener is a super user).
    producer = Producer({"bootstrap.servers": state.bootstrap})
    for topic in READ_TOPICS:
        producer.produce(topic, GARBAGE, key=b"1")
    assert producer.flush(30) == 0
    for topic in (TWEETS, TWEETS_ENRICHED, RECOMMENDATIONS, NOTIFICATIONS, INTERACTIONS):
        dlq = CATALOG.get(topic).dlq_name
        wait_for(has_records(state.bootstrap, dlq), 90, f"a record on {dlq}")

    # The DAGs, as the `airflow` principal over SASL_SSL (as `starling up` runs Airflow).
    env = connections_env(
        state.sasl_bootstrap,
        state.store_url,
        **{
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "airflow",
            "sasl.password": stack._kafka_passwords["airflow"],
            "ssl.ca.location": str(kafka.ca_location),
        },
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The current hour: it holds the generator's traffic and the garbage above.
    interval_end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for dag_file in (
        "user_interaction_analysis.py",
        "data_cleaning_sentiment.py",
        "recommendations.py",
    ):
        run = load_dag(dag_file).test(logical_date=interval_end)
        assert run.state == "success", dag_file
    # A real sign-in, then five failed ones on one account: an account_activity
    # notification (the 5th failure within 10 minutes).
    failures = [
        login_trigger_payload(
            encode(
                new_event(
                    UserLogin,
                    user_id=12,
                    username="u12",
                    outcome=LoginOutcome.BAD_PASSWORD,
                    success=False,
                    ip="192.0.2.7",
                )
            )
        )
        for _ in range(5)
    ]
    payloads = [first_login_payload(state.bootstrap), *failures]
    run = load_dag("login_events.py").test(run_conf={"payloads": payloads})
    assert run.state == "success", "login_events"
    # The login watcher's broker side, as the triggerer runs it: it reads the logins in
    # its group and dead-letters what its filter rejects (the garbage above).
    asyncio.run(watch_logins_until_a_rejection())

    # Trends publishes once a window closes with a burst (tuned knobs, see the fixture).
    wait_for(has_records(state.bootstrap, TRENDS), 120, "a trend")

    decisions = kafka.authorizer_decisions()
    ours = {f"User:{p.name}" for p in PRINCIPALS}
    denied = sorted(
        {
            (d.principal, d.operation, d.resource)
            for d in decisions
            if not d.allowed and d.principal in ours
        }
    )
    assert denied == [], f"operations the access map does not grant: {denied}"

    used = used_grants(decisions)
    granted = access_map_grants()
    assert used <= granted
    exempt = {
        (principal, kind, name, pattern, operation.name)
        for (principal, kind, name, operation), _ in UNUSED_GRANTS.items()
        for pattern in ("literal", "prefix")
    }
    unused = sorted(granted - used - exempt)
    print(f"\n{len(granted)} grants, {len(used)} used, {len(UNUSED_GRANTS)} exempt")
    assert unused == [], (
        "grants no run used (drop them, or list them in starling.access.UNUSED_GRANTS with "
        f"the reason they are kept): {unused}"
    )
