"""The values the Pulumi program really sends (infra/starling_infra/services.py) pass
helm's schema check and render: the contract checked from both ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from starling.runtime.config import SERVICE_NAMES as RUNNABLE_SERVICES
from tests.unit.charts.conftest import CHART_DIR, SERVICES, by_kind, template

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

INFRA_DIR = CHART_DIR.parents[1] / "infra"
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))

services_module = pytest.importorskip(
    "starling_infra.services", reason="the Pulumi program (infra/) is not importable"
)
config_module = pytest.importorskip("starling_infra.config")
meta = pytest.importorskip("starling_infra.meta")


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {"replicas": 2, "autoscaling": True, "max_replicas": 5, "pod_disruption_budget": True},
            id="scaled",
        ),
        pytest.param({"network_policy": False}, id="no-netpol"),
    ],
)
def test_program_values_render(helm: Path, tmp_path: Path, settings: dict[str, object]) -> None:
    values = services_module.chart_values(
        config_module.ServicesConfig(**settings),
        "starling-services:0.1.0",
        "IfNotPresent",
        f"{meta.STORE_NAME}.{meta.NAMESPACE}.svc",
        meta.STORE_NAME,
    )
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    documents = template(
        helm, [values_file], release=meta.SERVICES_RELEASE, namespace=meta.NAMESPACE
    )
    deployments = by_kind(documents, "Deployment")
    enabled = {name for name in SERVICES if values["services"][name]["enabled"]}
    assert set(deployments) == enabled
    assert enabled == set(RUNNABLE_SERVICES), "deploy exactly what `starling run` can start"
    if "gateway" in enabled:
        # The program derives the gateway URL from this naming; keep them in step.
        gateway = by_kind(documents, "Service")["gateway"]
        assert gateway["metadata"]["name"] == f"{meta.SERVICES_RELEASE}-gateway"
    assert ("NetworkPolicy" in {doc["kind"] for doc in documents}) == values["networkPolicy"][
        "enabled"
    ]
