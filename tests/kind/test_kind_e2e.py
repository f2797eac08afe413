"""End to end on kind: Strimzi reconciled what Pulumi declared, pods run, events flow.

Preconditions (the workflow's steps): a kind cluster from gitops/kind/kind-starling.yaml,
our images loaded, `pulumi up` of the `dev` stack finished.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from starling.access import PRINCIPALS
from starling.topics import CATALOG

pytestmark = pytest.mark.kind

NAMESPACE = "starling"
LOADGEN_JOB = Path(__file__).resolve().parents[2] / "gitops" / "kind" / "loadgen-job.yaml"


def kubectl(context: str, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["kubectl", "--context", context, "-n", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def resources(context: str, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl(context, "get", kind, "-o", "json"))["items"]
    return items


def is_ready(resource: dict[str, Any]) -> bool:
    conditions = resource.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_kafka_cluster_is_ready(kind_context: str) -> None:
    kubectl(kind_context, "wait", "kafka/starling", "--for=condition=Ready", "--timeout=600s")


def test_every_catalog_topic_is_reconciled(kind_context: str) -> None:
    topics = {t["spec"]["topicName"]: t for t in resources(kind_context, "kafkatopics")}
    assert CATALOG.names() <= set(topics)
    not_ready = sorted(name for name in CATALOG.names() if not is_ready(topics[name]))
    assert not not_ready, f"topics not Ready: {not_ready}"


def test_every_user_is_reconciled_with_its_secret(kind_context: str) -> None:
    users = {u["metadata"]["name"]: u for u in resources(kind_context, "kafkausers")}
    for principal in PRINCIPALS:
        name = f"starling-{principal.name}"
        assert name in users and is_ready(users[name]), f"KafkaUser {name} not Ready"
        kubectl(kind_context, "get", "secret", name)  # written by the User Operator


def test_services_and_store_are_available(kind_context: str) -> None:
    kubectl(
        kind_context,
        "wait",
        "deployment",
        "-l",
        "app.kubernetes.io/part-of=starling",
        "--for=condition=Available",
        "--timeout=300s",
    )
    kubectl(kind_context, "rollout", "status", "statefulset/starling-valkey", "--timeout=300s")


def test_generated_traffic_reaches_the_store(kind_context: str) -> None:
    keys_before = _store_key_count(kind_context)
    kubectl(kind_context, "delete", "job", "starling-loadgen-e2e", "--ignore-not-found")
    kubectl(kind_context, "apply", "-f", str(LOADGEN_JOB))
    kubectl(
        kind_context,
        "wait",
        "job/starling-loadgen-e2e",
        "--for=condition=Complete",
        "--timeout=300s",
        timeout=320,
    )
    deadline = time.monotonic() + 120
    while _store_key_count(kind_context) <= keys_before:
        assert time.monotonic() < deadline, "no new keys in the store 120 s after the traffic"
        time.sleep(5)


def _store_key_count(context: str) -> int:
    # The password stays inside the pod: the StatefulSet's probe command (TLS, password read
    # from the mounted Secret file), with DBSIZE instead of PING.
    command = (
        'REDISCLI_AUTH="$(cat /etc/valkey/password)" valkey-cli --tls'
        " --cacert /etc/valkey-tls/ca.crt -h 127.0.0.1 -p 6379 DBSIZE"
    )
    output = kubectl(context, "exec", "starling-valkey-0", "--", "sh", "-c", command)
    return int(output.strip())


AIRFLOW_NAMESPACE = "starling-airflow"
AIRFLOW_SCHEDULER = "deployment/starling-airflow-scheduler"


def test_logins_start_asset_triggered_login_runs(kind_context: str) -> None:
    """The generated traffic includes logins: the in-cluster triggerer's watcher must have
    turned them into asset-triggered `login_events` runs that succeeded (no manual trigger
    anywhere in the workflow)."""
    deadline = time.monotonic() + 300
    while True:
        result = subprocess.run(
            [
                "kubectl", "--context", kind_context, "-n", AIRFLOW_NAMESPACE,
                "exec", AIRFLOW_SCHEDULER, "-c", "scheduler", "--",
                "airflow", "dags", "list-runs", "login_events", "--output", "json",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        # The CLI may print warnings before the JSON; the list is the last line. It has no
        # run type column: asset-triggered runs are told by their run id's prefix.
        lines = result.stdout.strip().splitlines() if result.returncode == 0 else []
        runs = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else []
        done = [r for r in runs if str(r.get("run_id", "")).startswith("asset_triggered__")]
        if any(r.get("state") == "success" for r in done):
            assert not [r for r in done if r.get("state") == "failed"], done
            return
        assert time.monotonic() < deadline, (
            f"no successful asset-triggered login_events run within 300 s: {runs or result.stderr}"
        )
        time.sleep(10)


class _PortForward:
    """`kubectl port-forward` to a Service for the length of a `with` block."""

    def __init__(self, context: str, namespace: str, service: str, port: int) -> None:
        self.args = [
            "kubectl", "--context", context, "-n", namespace, "port-forward",
            f"svc/{service}", f"{port}:{port}",
        ]  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> str:
        import httpx

        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url, timeout=1)
                return self.url
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{' '.join(self.args)} never answered"
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def test_demo_user_signs_in_and_reads_only_with_a_token(kind_context: str) -> None:
    """The dev stack: the built-in issuer signs u1 in with the dev password, the gateway
    accepts that token and refuses a request without one."""
    import httpx

    with (
        _PortForward(kind_context, NAMESPACE, "starling-services-identity", 8081) as identity,
        _PortForward(kind_context, NAMESPACE, "starling-services-gateway", 8080) as gateway,
    ):
        session = httpx.post(
            f"{identity}/v1/sessions",
            json={"username": "u1", "password": "starling-dev-password"},
            timeout=30,
        )
        assert session.status_code == 201, session.text
        token = session.json()["access_token"]
        timeline = f"{gateway}/v1/users/1/timeline"
        assert httpx.get(timeline, timeout=10).status_code == 401
        authorized = httpx.get(timeline, headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert authorized.status_code == 200, authorized.text


def test_airflow_ui_has_no_admin_admin(kind_context: str) -> None:
    """SimpleAuthManager knows only starling-admin, with the seed-derived password."""
    import base64

    import httpx

    secret = json.loads(
        subprocess.run(
            [
                "kubectl", "--context", kind_context, "-n", AIRFLOW_NAMESPACE, "get",
                "secret", "starling-airflow-ui-admin", "-o", "json",
            ],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    password = base64.b64decode(secret["data"]["password"]).decode()
    with _PortForward(kind_context, AIRFLOW_NAMESPACE, "starling-airflow-api-server", 8080) as url:
        default = httpx.post(
            f"{url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30
        )
        assert default.status_code in (401, 403), default.text
        ours = httpx.post(
            f"{url}/auth/token",
            json={"username": "starling-admin", "password": password},
            timeout=30,
        )
        assert ours.status_code in (200, 201), ours.status_code
        assert ours.json()["access_token"]
