"""`starling status --kube-context` as a real process against the real API server, after the
real Pulumi engine deployed the `ci` stack.

No operator or kubelet runs in this tier: every Strimzi resource lacks its Ready condition
and no Deployment has a ready replica, so the command must list everything by name, call it
not ready and exit 1. Writing a Ready condition through a KafkaTopic's status subresource
(what the Topic Operator does) must turn exactly that topic's row healthy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from starling.access import PRINCIPALS
from starling.harness.controlplane import (
    KUBECONFIG_CONTEXT,
    ControlPlane,
    KubeApi,
)
from starling.runtime.config import SERVICE_NAMES as RUNNABLE_SERVICES
from starling.topics import CATALOG
from tests.controlplane.pulumi_runner import CiStack

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(3600)]

NAMESPACE = "starling"
TOPICS = "/apis/kafka.strimzi.io/v1/namespaces/starling/kafkatopics"
CI_CATALOG = CATALOG.for_cluster(1)


@pytest.fixture(scope="module")
def deployed(new_ci_stack: Callable[[str], CiStack]) -> Iterator[CiStack]:
    stack = new_ci_stack("status-ci-stack")
    try:
        result, log = stack.up()
        assert result.summary.result == "succeeded", log.diagnostics
        yield stack
    finally:
        if stack.outputs():
            stack.destroy()


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[KubeApi]:
    with control_plane.api() as client:
        yield client


def starling_status(kubeconfig: Path, context: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    command = [sys.executable, "-m", "starling.cli", "status", "--kube-context", context]
    return subprocess.run(
        [*command, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def table_rows(output: str) -> dict[str, tuple[str, str]]:
    """component -> (detail, health) from the rendered table; a wrapped detail's
    continuation lines (empty component cell) are joined to their row."""
    rows: dict[str, tuple[str, str]] = {}
    current = ""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 3 or cells == ["component", "detail", "health"]:
            continue
        if cells[0]:
            current = cells[0]
            rows[current] = (cells[1], cells[2])
        elif current:
            detail, health = rows[current]
            rows[current] = (f"{detail} {cells[1]}".strip(), health or cells[2])
    return rows


def test_status_lists_everything_not_ready_and_exits_1(
    deployed: CiStack, control_plane: ControlPlane
) -> None:
    done = starling_status(control_plane.kubeconfig, KUBECONFIG_CONTEXT)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    rows = table_rows(done.stdout)
    assert rows["cluster"][0].startswith(control_plane.server)
    expected = [f"topic {topic.name}" for topic in CI_CATALOG.all_topics()]
    expected += [f"user starling-{principal.name}" for principal in PRINCIPALS]
    expected += ["kafka starling", "nodepool dual-role"]
    for component in expected:
        assert component in rows, (component, done.stdout)
        detail, health = rows[component]
        assert health == "UNHEALTHY", (component, detail)
    assert "no Ready condition" in rows["topic tweets"][0]
    # The services release's Deployments and the store's StatefulSet: desired, none ready.
    deployments = [name for name in rows if name.startswith(f"deployment {NAMESPACE}/")]
    assert len(deployments) == len(RUNNABLE_SERVICES), sorted(rows)
    for name in deployments:
        assert rows[name] == ("0/1 replica(s) ready", "UNHEALTHY"), name
    assert rows[f"statefulset {NAMESPACE}/starling-valkey"][1] == "UNHEALTHY"
    # airflow.enabled: false in the ci stack: information, not a fault.
    assert rows["airflow release"] == ("starling-airflow is not installed", "")


def test_a_topic_marked_ready_is_reported_ready(
    deployed: CiStack, control_plane: ControlPlane, api: KubeApi
) -> None:
    # What the Topic Operator writes once the topic exists in Kafka.
    api.merge_patch(
        f"{TOPICS}/tweets/status",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )
    done = starling_status(control_plane.kubeconfig, KUBECONFIG_CONTEXT)
    rows = table_rows(done.stdout)
    assert rows["topic tweets"] == ("Ready", "ok"), done.stdout
    assert rows["topic tweets.dlq"][1] == "UNHEALTHY"
    assert rows["kafka starling"][1] == "UNHEALTHY"
    assert done.returncode == 1


def test_unknown_context_against_the_real_kubeconfig(
    deployed: CiStack, control_plane: ControlPlane
) -> None:
    done = starling_status(control_plane.kubeconfig, "kind-starling")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"starling status: context 'kind-starling' is not in kubeconfig"
        f" {control_plane.kubeconfig} (it has: {KUBECONFIG_CONTEXT}); pass one of those to"
        " --kube-context, or --kubeconfig <path>"
    ]
