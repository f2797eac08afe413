"""The `ci` stack file under Pulumi's mocks (no control plane): what it configures around,
and that everything else is the dev stack's program."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.infra.harness import REPO_ROOT, run_program

pytestmark = pytest.mark.unit


def _stack_file(stack: str) -> dict[str, object]:
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, object] = document["config"]
    return config


# Its keys are checked against the config model with dev's and prod's in
# tests/unit/infra/test_config.py::test_stack_files_use_model_keys_only.


def test_ci_differs_from_dev_only_where_the_control_plane_needs_it() -> None:
    ci, dev = _stack_file("ci"), _stack_file("dev")
    worked_around = {
        "kubernetes:context",
        "starling:strimzi.installOperator",
        "starling:strimzi.crdsFrom",
        "starling:strimzi.crdsDirectory",
        "starling:kafka.waitForReady",
        "starling:airflow.enabled",
    }
    # Keys dev sets only for Airflow are moot with Airflow off.
    airflow_only = {key for key in dev if key.startswith("starling:airflow.")}
    for key, value in dev.items():
        if key in worked_around or key in airflow_only:
            continue
        assert ci.get(key) == value, key
    for key in set(ci) - set(dev) - worked_around:
        # What ci adds beyond dev restates a default, for the reader.
        assert key in {"starling:services.enabled", "starling:services.replicas"}, key


def test_ci_program_has_no_remote_chart_and_no_readiness_waits() -> None:
    run = run_program("ci")
    types = [resource.type for resource in run.resources]
    # Only the local services chart is a Helm release (no operator chart, no Airflow).
    releases = run.of_type("kubernetes:helm.sh/v3:Release")
    assert [r.name for r in releases] == ["services-release"]
    assert str(releases[0].inputs["chart"]).endswith("charts/starling-services")
    assert "kubernetes:yaml/v2:ConfigGroup" in types  # the Strimzi CRDs, applied by Pulumi
    for resource in run.kubernetes_objects():
        annotations = (resource.inputs.get("metadata") or {}).get("annotations") or {}
        assert "pulumi.com/waitFor" not in annotations, resource.name
