"""The CrossGuard wrappers, driven through the SDK's own validate() with real
ResourceValidationArgs, as the policy analyzer calls them."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy
from starling_policy.pack import POLICIES, current_stack

from tests.unit.policy.conftest import POLICY_DIR

pytestmark = pytest.mark.unit

POLICY_NAMES = {
    "no-privileged-containers",
    "no-root-containers",
    "no-privilege-escalation",
    "resources-required",
    "pinned-image-tags",
    "kafka-listeners-authenticated",
}


@pytest.fixture
def stack() -> Iterator[None]:
    """Leave pulumi's global stack setting as it was found."""
    previous = pulumi.get_stack()
    yield
    settings._set_stack(previous)


def policy(name: str) -> ResourceValidationPolicy:
    return next(p for p in POLICIES if p.name == name)


def run(name: str, resource_type: str, props: dict[str, Any], stack: str = "prod") -> list[str]:
    options = PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )
    args = ResourceValidationArgs(
        resource_type=resource_type,
        # The analyzer hands policies this proxy, not a dict; the rules must cope.
        props=unknown_checking_proxy(props),
        urn=f"urn:pulumi:{stack}::starling::{resource_type}::thing",
        name="thing",
        opts=options,
        provider=None,
    )
    reported: list[str] = []

    def report_violation(message: str, urn: str | None = None) -> None:
        reported.append(message)

    policy(name).validate(args, report_violation)
    return reported


def deployment(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


GOOD = {
    "name": "app",
    "image": "starling-services:0.1.0",
    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    "resources": {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    },
}
BAD = {"name": "app", "image": "app:latest", "securityContext": {"privileged": True}}


def test_pack_has_every_rule_once() -> None:
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names))
    assert set(names) == POLICY_NAMES


def test_the_pack_serves_under_the_real_sdk() -> None:
    """`policy/__main__.py` is what the CLI runs: it must build the pack and serve it.

    The SDK prints the analyzer's port on stdout once serving, then blocks forever.
    """
    process = subprocess.Popen(
        [sys.executable, "__main__.py"],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
    finally:
        watchdog.cancel()
        process.kill()
        _, stderr = process.communicate(timeout=30)
    assert first_line.isdigit(), f"no port printed; stderr:\n{stderr}"


@pytest.mark.parametrize("name", sorted(POLICY_NAMES - {"kafka-listeners-authenticated"}))
def test_pod_policies_pass_a_compliant_deployment(name: str) -> None:
    assert run(name, "kubernetes:apps/v1:Deployment", deployment(GOOD)) == []


@pytest.mark.parametrize("name", sorted(POLICY_NAMES - {"kafka-listeners-authenticated"}))
def test_pod_policies_flag_a_bad_deployment(name: str) -> None:
    assert run(name, "kubernetes:apps/v1:Deployment", deployment(BAD)) != []


@pytest.mark.parametrize("name", sorted(POLICY_NAMES - {"kafka-listeners-authenticated"}))
def test_pod_policies_ignore_resources_without_pods(name: str) -> None:
    props = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"image": "x:latest"}}
    assert run(name, "kubernetes:core/v1:ConfigMap", props) == []


PLAIN_KAFKA = {
    "apiVersion": "kafka.strimzi.io/v1",
    "kind": "Kafka",
    "metadata": {"name": "starling"},
    "spec": {
        "kafka": {"listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}]}
    },
}
KAFKA_TYPE = "kubernetes:kafka.strimzi.io/v1:Kafka"


def test_kafka_policy_reads_the_stack_from_pulumi(stack: None) -> None:
    settings._set_stack("dev")
    # The URN says prod, but the runtime's stack (what get_stack returns) decides.
    assert run("kafka-listeners-authenticated", KAFKA_TYPE, PLAIN_KAFKA, stack="prod") == []
    settings._set_stack("prod")
    assert len(run("kafka-listeners-authenticated", KAFKA_TYPE, PLAIN_KAFKA, stack="prod")) == 1


def test_kafka_policy_falls_back_to_the_urn_stack(stack: None) -> None:
    settings._set_stack(None)
    assert run("kafka-listeners-authenticated", KAFKA_TYPE, PLAIN_KAFKA, stack="dev") == []
    assert len(run("kafka-listeners-authenticated", KAFKA_TYPE, PLAIN_KAFKA, stack="ci")) == 1


def test_kafka_policy_ignores_other_resources(stack: None) -> None:
    settings._set_stack("prod")
    topic = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "spec": {}}
    assert (
        run("kafka-listeners-authenticated", "kubernetes:kafka.strimzi.io/v1:KafkaTopic", topic)
        == []
    )


def test_current_stack_parses_urns(stack: None) -> None:
    settings._set_stack(None)
    assert current_stack("urn:pulumi:ci::starling::kubernetes:apps/v1:Deployment::x") == "ci"
    assert current_stack("not-a-urn") == ""
