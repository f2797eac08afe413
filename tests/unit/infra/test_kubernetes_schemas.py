"""Every plain Kubernetes object is valid for the oldest and newest Kubernetes we support."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from tests.unit.infra.harness import ProgramRun

pytestmark = pytest.mark.unit

# Strimzi 1.2 needs Kubernetes >= 1.30; 1.37 is the newest schema set available.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


@pytest.fixture(scope="module", autouse=True)
def _parse_each_schema_file_once() -> Iterator[None]:
    """kubernetes-validate re-reads its (large) definitions file on every call; caching the
    parsed files cuts this module from ~10 s to ~2 s without changing what is checked."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)
    yield
    kubernetes_validate.utils.schema_contents = original


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_plain_objects_validate_strictly(stack_run: ProgramRun, version: str) -> None:
    objects = [
        r for r in stack_run.kubernetes_objects() if "strimzi.io" not in r.inputs["apiVersion"]
    ]
    kinds = {r.kind for r in objects}
    assert {"Namespace", "Secret", "ConfigMap", "StatefulSet", "Service", "NetworkPolicy"} <= kinds
    for resource in objects:
        try:
            kubernetes_validate.validate(resource.manifest(), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{resource.kind} {resource.name} on {version}: {error}")


def test_strict_validation_rejects_an_unknown_field(dev_run: ProgramRun) -> None:
    manifest = dev_run.named("store-service").manifest()
    manifest["spec"] = {**manifest["spec"], "clusterIp": "None"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
