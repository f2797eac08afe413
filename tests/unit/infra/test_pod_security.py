"""Our own workloads meet the "restricted" Pod Security profile (the checker itself is tested
in tests/unit/test_pod_security_checker.py)."""

from __future__ import annotations

import pytest

from tests.pod_security import assert_restricted, pod_spec_of
from tests.unit.infra.harness import ProgramRun

pytestmark = pytest.mark.unit


def test_our_statefulsets_are_restricted(stack_run: ProgramRun) -> None:
    statefulsets = stack_run.of_kind("StatefulSet")
    assert {s.inputs["metadata"]["name"] for s in statefulsets} == {
        "starling-valkey",
        "starling-airflow-db",
    }
    for statefulset in statefulsets:
        assert_restricted(statefulset.manifest())


def test_our_containers_have_a_read_only_root_and_no_token(stack_run: ProgramRun) -> None:
    for statefulset in stack_run.of_kind("StatefulSet"):
        pod = pod_spec_of(statefulset.manifest())
        assert pod is not None
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["limits"]["memory"]
