"""The restricted-profile checker itself: it must flag what the admission controller
would reject, or the chart tests built on it prove nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.pod_security import pod_spec_of, restricted_violations

pytestmark = pytest.mark.unit

COMPLIANT_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ok"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "main",
                "image": "example:1",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    },
}


def pod_with(**changes: Any) -> dict[str, Any]:
    """The compliant pod with dotted-path changes applied (a None value deletes)."""
    pod = copy.deepcopy(COMPLIANT_POD)
    for dotted, value in changes.items():
        node: Any = pod
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return pod


def test_compliant_pod_passes() -> None:
    assert restricted_violations(COMPLIANT_POD) == []


def test_deployment_template_is_found_and_checked() -> None:
    deployment: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": pod_with(spec__hostNetwork=True)["spec"]}},
    }
    assert pod_spec_of(deployment) is deployment["spec"]["template"]["spec"]
    assert restricted_violations(deployment) == [
        "Deployment/d: pod: spec.hostNetwork must not be true"
    ]


def test_non_workloads_are_ignored() -> None:
    assert restricted_violations({"kind": "Service", "spec": {}}) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"spec__containers__0__securityContext__privileged": True}, "privileged"),
        (
            {"spec__containers__0__securityContext__allowPrivilegeEscalation": None},
            "allowPrivilegeEscalation",
        ),
        (
            {"spec__containers__0__securityContext__allowPrivilegeEscalation": True},
            "allowPrivilegeEscalation",
        ),
        ({"spec__securityContext__runAsNonRoot": None}, "runAsNonRoot"),
        ({"spec__containers__0__securityContext__runAsNonRoot": False}, "runAsNonRoot"),
        ({"spec__containers__0__securityContext__runAsUser": 0}, "runAsUser"),
        ({"spec__securityContext__seccompProfile": None}, "seccompProfile"),
        ({"spec__securityContext__seccompProfile": {"type": "Unconfined"}}, "seccompProfile"),
        ({"spec__containers__0__securityContext__capabilities": None}, "drop must include ALL"),
        ({"spec__containers__0__securityContext__capabilities__add": ["SYS_ADMIN"]}, "SYS_ADMIN"),
        ({"spec__volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, "hostPath"),
        ({"spec__hostPID": True}, "hostPID"),
        ({"spec__containers__0__ports": [{"containerPort": 80, "hostPort": 80}]}, "hostPort"),
        (
            {"spec__securityContext__sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "kernel.msgmax",
        ),
        ({"spec__containers__0__securityContext__procMount": "Unmasked"}, "procMount"),
        ({"spec__securityContext__seLinuxOptions": {"user": "root"}}, "seLinuxOptions.user"),
        (
            {"spec__containers__0__securityContext__appArmorProfile": {"type": "Unconfined"}},
            "appArmorProfile",
        ),
    ],
)
def test_violations_are_flagged(changes: dict[str, Any], expected: str) -> None:
    problems = restricted_violations(pod_with(**changes))
    assert any(expected in problem for problem in problems), problems


def test_container_level_settings_satisfy_the_profile_without_pod_level() -> None:
    pod = pod_with(spec__securityContext=None)
    context = pod["spec"]["containers"][0]["securityContext"]
    context.update(runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"})
    assert restricted_violations(pod) == []


def test_init_containers_are_checked_too() -> None:
    pod = pod_with()
    pod["spec"]["initContainers"] = [{"name": "setup", "image": "example:1"}]
    problems = restricted_violations(pod)
    assert any(problem.startswith("Pod/ok: initContainers[setup]") for problem in problems)


def test_net_bind_service_may_be_added_back() -> None:
    pod = pod_with(
        spec__containers__0__securityContext__capabilities={
            "drop": ["ALL"],
            "add": ["NET_BIND_SERVICE"],
        }
    )
    assert restricted_violations(pod) == []
