"""Each baseline rule on plain dicts: compliant, violating, and property missing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from starling_policy import rules

pytestmark = pytest.mark.unit

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def compliant_container(**overrides: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": "starling-services:0.1.0",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
    }
    container.update(overrides)
    return container


def spec_with(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"containers": list(containers), **pod}


def without(container: dict[str, Any], *path: str) -> dict[str, Any]:
    """A copy of `container` with the key at `path` removed."""
    changed = copy.deepcopy(container)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


# --- locating pods --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "props", "path"),
    [
        ("kubernetes:core/v1:Pod", {"spec": {"containers": []}}, ("spec",)),
        (
            DEPLOYMENT,
            {"spec": {"template": {"spec": {"containers": []}}}},
            ("spec", "template", "spec"),
        ),
        (
            "kubernetes:batch/v1:CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}},
            ("spec", "jobTemplate", "spec", "template", "spec"),
        ),
    ],
)
def test_pod_spec_is_found_in_each_workload_kind(
    resource_type: str, props: dict[str, Any], path: tuple[str, ...]
) -> None:
    expected: Any = props
    for key in path:
        expected = expected[key]
    assert rules.pod_spec(resource_type, props) is expected


def test_non_workloads_have_no_pod_spec() -> None:
    assert rules.pod_spec("kubernetes:core/v1:Service", {"spec": {}}) is None


def test_workload_without_a_template_yields_an_empty_spec() -> None:
    assert rules.pod_spec(DEPLOYMENT, {"spec": {}}) == {}


# --- no privileged containers ---------------------------------------------------------------


def test_privileged_compliant() -> None:
    assert rules.privileged_containers(spec_with(compliant_container())) == []


def test_privileged_violating() -> None:
    container = compliant_container(securityContext={"privileged": True})
    assert rules.privileged_containers(spec_with(container)) == [
        "container 'app' (containers) runs privileged (securityContext.privileged: true)"
    ]


def test_privileged_missing_is_unprivileged() -> None:
    container = without(compliant_container(), "securityContext")
    assert rules.privileged_containers(spec_with(container)) == []


def test_privileged_init_container_is_caught() -> None:
    init = compliant_container(name="setup", securityContext={"privileged": True})
    problems = rules.privileged_containers(spec_with(compliant_container(), initContainers=[init]))
    assert problems == [
        "container 'setup' (initContainers) runs privileged (securityContext.privileged: true)"
    ]


# --- no root ----------------------------------------------------------------------------


def test_root_compliant_at_container_level() -> None:
    assert rules.root_containers(spec_with(compliant_container())) == []


def test_root_compliant_at_pod_level() -> None:
    container = without(compliant_container(), "securityContext", "runAsNonRoot")
    spec = spec_with(container, securityContext={"runAsNonRoot": True})
    assert rules.root_containers(spec) == []


def test_root_violating_container_overrides_pod() -> None:
    container = compliant_container(securityContext={"runAsNonRoot": False})
    spec = spec_with(container, securityContext={"runAsNonRoot": True})
    assert rules.root_containers(spec) == [
        "container 'app' (containers) may run as root: "
        "set runAsNonRoot: true on the pod or container"
    ]


def test_root_violating_uid_zero() -> None:
    container = compliant_container(securityContext={"runAsNonRoot": True, "runAsUser": 0})
    spec = spec_with(container, securityContext={"runAsUser": 0})
    assert rules.root_containers(spec) == [
        "pod securityContext.runAsUser is 0 (root)",
        "container 'app' (containers) securityContext.runAsUser is 0 (root)",
    ]


def test_root_missing_everywhere_is_a_violation() -> None:
    container = without(compliant_container(), "securityContext")
    assert len(rules.root_containers(spec_with(container))) == 1


# --- allowPrivilegeEscalation false -------------------------------------------------------


def test_escalation_compliant() -> None:
    assert rules.privilege_escalation(spec_with(compliant_container())) == []


def test_escalation_violating() -> None:
    container = compliant_container(securityContext={"allowPrivilegeEscalation": True})
    assert rules.privilege_escalation(spec_with(container)) == [
        "container 'app' (containers) does not set securityContext.allowPrivilegeEscalation: false"
    ]


def test_escalation_missing_is_a_violation() -> None:
    container = without(compliant_container(), "securityContext", "allowPrivilegeEscalation")
    assert len(rules.privilege_escalation(spec_with(container))) == 1


# --- resources ---------------------------------------------------------------------------


def test_resources_compliant() -> None:
    assert rules.missing_resources(spec_with(compliant_container())) == []


def test_resources_violating_partial() -> None:
    container = without(compliant_container(), "resources", "limits", "cpu")
    container = without(container, "resources", "requests", "memory")
    assert rules.missing_resources(spec_with(container)) == [
        "container 'app' (containers) has no resources requests.memory, limits.cpu"
    ]


def test_resources_missing_entirely() -> None:
    container = without(compliant_container(), "resources")
    assert rules.missing_resources(spec_with(container)) == [
        "container 'app' (containers) has no resources "
        "requests.cpu, requests.memory, limits.cpu, limits.memory"
    ]


def test_resources_not_demanded_of_ephemeral_containers() -> None:
    debug = {"name": "debug", "image": "busybox:1.37"}
    spec = spec_with(compliant_container(), ephemeralContainers=[debug])
    assert rules.missing_resources(spec) == []


# --- image tags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "starling-services:0.1.0",
        "registry.local:5000/team/app:1.2.3",
        "app@sha256:" + "a" * 64,
        "app:latest@sha256:" + "b" * 64,
    ],
)
def test_images_compliant(image: str) -> None:
    assert rules.unpinned_images(spec_with(compliant_container(image=image))) == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("app:latest", "uses the mutable tag 'latest'"),
        ("app", "has no tag"),
        ("registry.local:5000/team/app", "has no tag"),
    ],
)
def test_images_violating(image: str, problem: str) -> None:
    problems = rules.unpinned_images(spec_with(compliant_container(image=image)))
    assert len(problems) == 1 and problem in problems[0]


def test_image_missing_is_a_violation() -> None:
    container = without(compliant_container(), "image")
    assert rules.unpinned_images(spec_with(container)) == [
        "container 'app' (containers) has no image"
    ]


# --- Kafka listeners --------------------------------------------------------------------------


def kafka(*listeners: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": {"name": "starling"},
        "spec": {"kafka": {"listeners": list(listeners)}},
    }


TLS_SCRAM = {
    "name": "tls",
    "port": 9093,
    "type": "internal",
    "tls": True,
    "authentication": {"type": "scram-sha-512"},
}
PLAIN = {"name": "plain", "port": 9092, "type": "internal", "tls": False}


def test_kafka_compliant() -> None:
    assert rules.unauthenticated_kafka_listeners(kafka(TLS_SCRAM), "prod") == []


def test_kafka_violating_outside_dev() -> None:
    assert rules.unauthenticated_kafka_listeners(kafka(TLS_SCRAM, PLAIN), "prod") == [
        "Kafka listener 'plain' (port 9092) has no authentication; "
        "only the dev stack may run one (stack is 'prod')"
    ]


def test_kafka_unauthenticated_listener_allowed_in_dev() -> None:
    assert rules.unauthenticated_kafka_listeners(kafka(TLS_SCRAM, PLAIN), "dev") == []


def test_kafka_authentication_without_type_is_a_violation() -> None:
    listener = {**TLS_SCRAM, "authentication": {}}
    assert len(rules.unauthenticated_kafka_listeners(kafka(listener), "ci")) == 1


def test_kafka_listeners_missing_is_nothing_to_judge() -> None:
    assert rules.unauthenticated_kafka_listeners({"spec": {"kafka": {}}}, "prod") == []
    assert rules.unauthenticated_kafka_listeners({}, "prod") == []


@pytest.mark.parametrize(
    ("resource_type", "expected"),
    [
        ("kubernetes:kafka.strimzi.io/v1:Kafka", True),
        ("kubernetes:kafka.strimzi.io/v1:KafkaTopic", False),
        ("kubernetes:apps/v1:Deployment", False),
    ],
)
def test_strimzi_kafka_type_is_recognised(resource_type: str, expected: bool) -> None:
    assert rules.is_strimzi_kafka(resource_type) is expected
