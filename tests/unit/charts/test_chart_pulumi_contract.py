"""The values the Pulumi program really sends (infra/starling_infra/services.py) pass
helm's schema check and render: the contract checked from both ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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


identity_module = pytest.importorskip("starling_infra.identity")
SEED = "0123456789abcdef" * 4
EXTERNAL = {"identity": {"issuerUrl": "https://login.example.com/realms/starling"}}
HEADER = {
    "gateway": {
        "trustUserHeader": {"enabled": True, "proxies": ["10.42.0.0/16"], "namespaces": ["auth"]}
    }
}


def _program_values(stack: dict[str, Any]) -> dict[str, Any]:
    config = config_module.StackConfig.model_validate(
        {"secretSeed": SEED, "environment": "dev", **stack}
    )
    values: dict[str, Any] = services_module.chart_values(
        config.services,
        "starling-services:0.1.0",
        "IfNotPresent",
        f"{meta.STORE_NAME}.{meta.NAMESPACE}.svc",
        meta.STORE_NAME,
        identity_module.auth_values(config),
    )
    return values


def _render(helm: Path, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    return template(helm, [values_file], release=meta.SERVICES_RELEASE, namespace=meta.NAMESPACE)


@pytest.mark.parametrize(
    ("stack", "identity_deployed"),
    [
        pytest.param({}, True, id="defaults"),
        pytest.param(
            {
                "services": {
                    "replicas": 2,
                    "autoscaling": True,
                    "maxReplicas": 5,
                    "podDisruptionBudget": True,
                }
            },
            True,
            id="scaled",
        ),
        pytest.param({"services": {"networkPolicy": False}}, True, id="no-netpol"),
        pytest.param(EXTERNAL, False, id="external-issuer"),
        pytest.param(HEADER, False, id="header-trust"),
    ],
)
def test_program_values_render(
    helm: Path, tmp_path: Path, stack: dict[str, Any], identity_deployed: bool
) -> None:
    values = _program_values(stack)
    documents = _render(helm, tmp_path, values)
    deployments = by_kind(documents, "Deployment")
    enabled = {name for name in SERVICES if values["services"][name]["enabled"]}
    assert set(deployments) == enabled
    # Deploy exactly what `starling run` can start; identity only as the built-in issuer.
    expected = set(RUNNABLE_SERVICES) - (set() if identity_deployed else {"identity"})
    assert enabled == expected
    if "gateway" in enabled:
        # The program derives the gateway URL from this naming; keep them in step.
        gateway = by_kind(documents, "Service")["gateway"]
        assert gateway["metadata"]["name"] == f"{meta.SERVICES_RELEASE}-gateway"
    assert ("NetworkPolicy" in {doc["kind"] for doc in documents}) == values["networkPolicy"][
        "enabled"
    ]


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_program_gateway_trusts_the_builtin_issuer(helm: Path, tmp_path: Path) -> None:
    deployments = by_kind(_render(helm, tmp_path, _program_values({})), "Deployment")
    gateway, identity = _env(deployments["gateway"]), _env(deployments["identity"])
    # The issuer clients see on kind; the keys are read in-cluster from the identity Service.
    assert gateway["STARLING_GATEWAY_ISSUER"] == identity["STARLING_IDENTITY_ISSUER"]
    assert gateway["STARLING_GATEWAY_ISSUER"] == "http://localhost:8081"
    assert gateway["STARLING_GATEWAY_JWKS_URL"] == (
        "http://starling-services-identity.starling.svc:8081/.well-known/jwks.json"
    )
    assert meta.IDENTITY_IN_CLUSTER_URL == "http://starling-services-identity.starling.svc:8081"
    services = by_kind(_render(helm, tmp_path, _program_values({})), "Service")
    assert services["identity"]["metadata"]["name"] == meta.IDENTITY_SERVICE
    assert gateway["STARLING_GATEWAY_REVOCATION"] == "store"
    assert identity["STARLING_IDENTITY_DEV_MODE"] == "true"
