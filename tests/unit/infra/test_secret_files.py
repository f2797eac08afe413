"""What the program renders for each committed stack keeps secrets out of every container's
environment (its own objects and the services chart rendered with the values it sends), and
the store speaks TLS only, with a certificate from the internal CA naming its Service."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from starling_infra import meta
from tests.unit.charts.secret_env import secret_env_findings
from tests.unit.infra.harness import ProgramRun, run_program

pytestmark = pytest.mark.unit

STACKS = ("dev", "ci", "prod")


@pytest.fixture(scope="module", params=STACKS)
def any_run(request: pytest.FixtureRequest) -> ProgramRun:
    return run_program(str(request.param))


def _services_chart_render(helm: Path, run: ProgramRun) -> list[dict[str, Any]]:
    release = run.named("services-release").inputs
    completed = subprocess.run(
        [
            str(helm),
            "template",
            release["name"],
            release["chart"],
            "--namespace",
            meta.NAMESPACE,
            "--values",
            "-",
        ],
        input=json.dumps(release["values"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def test_no_container_env_holds_a_secret(
    any_run: ProgramRun, go_tool: Callable[[str], Path]
) -> None:
    manifests = [resource.manifest() for resource in any_run.kubernetes_objects()]
    chart = _services_chart_render(go_tool("helm"), any_run)
    assert any(doc["kind"] == "Deployment" for doc in chart)
    findings = [line for doc in [*manifests, *chart] for line in secret_env_findings(doc)]
    assert findings == []


def test_the_store_speaks_tls_only(any_run: ProgramRun) -> None:
    conf = any_run.named("store-secret").inputs["stringData"]["valkey.conf"].splitlines()
    assert "port 0" in conf
    assert f"tls-port {meta.STORE_PORT}" in conf
    assert "tls-cert-file /etc/valkey-tls/tls.crt" in conf
    (container,) = any_run.named("store-statefulset").inputs["spec"]["template"]["spec"][
        "containers"
    ]
    assert "env" not in container or not container["env"]
    assert "--tls" in " ".join(container["readinessProbe"]["exec"]["command"])


def test_store_certificate_chains_to_the_ca_clients_get_and_names_the_host(
    any_run: ProgramRun,
) -> None:
    tls_secret = any_run.named("store-tls")
    assert tls_secret.inputs["type"] == "kubernetes.io/tls"
    assert "stringData" in tls_secret.secret_paths
    data = tls_secret.inputs["stringData"]
    ca_pem = any_run.named("store-internal-ca").inputs["stringData"]["ca.crt"]
    assert set(any_run.named("store-internal-ca").inputs["stringData"]) == {"ca.crt"}
    assert data["ca.crt"] == ca_pem
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    server = x509.load_pem_x509_certificate(data["tls.crt"].encode())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    store = any_run.named("services-release").inputs["values"]["store"]
    assert store["host"] in names.get_values_for_type(x509.DNSName)
    assert store["tls"] == {
        "enabled": True,
        "caSecret": {
            "name": any_run.named("store-internal-ca").inputs["metadata"]["name"],
            "key": "ca.crt",
        },
    }


def test_store_certificate_is_the_same_on_every_run() -> None:
    """Derived from the seed, so a second `pulumi up` shows no diff and rolls no pod."""
    first = run_program("dev").named("store-tls").inputs["stringData"]
    assert run_program("dev").named("store-tls").inputs["stringData"] == first
