"""A brute-force run against sign-in, end to end through real components: the identity
service limits the attempts, every attempt (failed and limited) lands on the logins topic
as a fact, and the login DAG in a real Airflow (triggerer, scheduler, dag-processor,
api-server) flags the account to its owner."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from starling.events import LoginOutcome, Notification, NotificationKind, UserLogin, decode_as
from starling.harness.airflow import AirflowStack, kafka_connection
from starling.topics import LOGINS, NOTIFICATIONS
from tests.airflow.conftest import DAGS
from tests.airflow.traffic import read_topic
from tests.integration.identity.servers import start_identity
from tests.integration.services.helpers import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATTEMPTS = 12
PER_ACCOUNT = 5
PASSWORD = "the victim's real password"


def handled_logins(af: AirflowStack) -> int:
    rows = af.query("SELECT value FROM xcom WHERE dag_id = 'login_events' AND key = 'return_value'")
    return sum(int(json.loads(r["value"])["logins"]) for r in rows)


def test_brute_force_is_limited_recorded_and_flagged_by_the_login_dag(
    starling_env: dict[str, str],
    kafka: Any,
    redis_server: Any,
    redis_client: Any,
    tmp_path: Path,
) -> None:
    bootstrap, prefix = starling_env["bootstrap"], starling_env["prefix"]
    # The identity service writes to the same (prefixed) topics the DAG watches.
    deployment = Deployment(kafka, prefix, redis_server.host, redis_server.port)
    seed = tmp_path / "seed"
    seed.write_bytes(b"brute-force-test-seed-0123456789abcdef0123456789")

    # Only the login DAG: the hourly ones would run against empty topics meanwhile.
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "login_events.py").symlink_to(DAGS / "login_events.py")
    env = {
        "AIRFLOW_CONN_KAFKA_DEFAULT": kafka_connection(
            bootstrap, **{"group.id": f"starling-airflow-login-watcher-{prefix}"}
        ),
        "AIRFLOW_CONN_STARLING_STORE": redis_server.url,
        "STARLING_TOPIC_PREFIX": prefix,
        # Airflow may hold the last asset event back until the next (see the DAG's doc);
        # the sweep that bounds that wait runs every minute here.
        "STARLING_LOGIN_SWEEP_MINUTES": "1",
    }
    with (
        AirflowStack.start(dags_folder=dags, env=env) as af,
        start_identity(
            deployment, seed, signup=True, signin_per_account=PER_ACCOUNT, signin_per_address=100
        ) as identity,
    ):
        created = identity.sign_up("victim", PASSWORD)
        assert created.status_code == 201, created.text
        victim = created.json()["user_id"]

        attacked = time.monotonic()
        answers = [identity.sign_in("victim", f"guess-{n:04d}-wrong") for n in range(ATTEMPTS)]
        statuses = [a.status_code for a in answers]
        # The first PER_ACCOUNT guesses are judged (and fail); every later one is refused
        # unjudged, with how long to wait.
        assert statuses == [401] * PER_ACCOUNT + [429] * (ATTEMPTS - PER_ACCOUNT), statuses
        assert {a.json()["error"] for a in answers[:PER_ACCOUNT]} == {"invalid_credentials"}
        for limited in answers[PER_ACCOUNT:]:
            assert limited.json()["error"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 300
        # Limited means limited: even the right password waits out the window.
        assert identity.sign_in("victim", PASSWORD).status_code == 429

        facts = [
            decode_as(r.value or b"", UserLogin) for r in read_topic(bootstrap, prefix + LOGINS)
        ]
        attempts = [f for f in facts if f.username == "victim"]
        assert [f.outcome for f in attempts] == [LoginOutcome.BAD_PASSWORD] * PER_ACCOUNT + [
            LoginOutcome.RATE_LIMITED
        ] * (ATTEMPTS - PER_ACCOUNT + 1)
        assert {f.user_id for f in attempts} == {victim}
        assert {f.schema_version for f in attempts} == {2}
        assert all(not f.success and f.ip == "127.0.0.1" for f in attempts)

        af.wait_until(
            lambda: handled_logins(af) >= len(attempts),
            timeout=240,
            what=f"the {len(attempts)} sign-in attempts judged by login_events runs",
        )
        print(f"attack to every attempt judged by the DAG: {time.monotonic() - attacked:.1f} s")
        assert "failed" not in {r["state"] for r in af.dag_runs("login_events")}

    notes = [
        decode_as(r.value or b"", Notification)
        for r in read_topic(bootstrap, prefix + NOTIFICATIONS)
    ]
    alerts = [n for n in notes if n.recipient_id == victim]
    assert alerts, "the account under attack is told"
    assert {n.kind for n in alerts} == {NotificationKind.ACCOUNT_ACTIVITY}
    # Flagged at the PER_ACCOUNT-th failure, and the alert is about failed sign-ins.
    flagged_at = [str(f.event_id) for f in attempts].index(str(alerts[0].source_event_id))
    assert flagged_at == PER_ACCOUNT - 1, flagged_at
    assert "failed sign-in attempts" in alerts[0].message, alerts[0].message
