"""Secrets reach the services as files: no container env carries one, and every `*_FILE`
path is inside a read-only Secret volume of the right Secret."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.unit.charts.conftest import CI_VALUES, SERVICES, Render, by_kind
from tests.unit.charts.secret_env import secret_env_findings

pytestmark = pytest.mark.unit

RENDERS = [pytest.param((), id="defaults")] + [
    pytest.param((path,), id=path.stem) for path in CI_VALUES
]


@pytest.mark.parametrize("values_files", RENDERS)
def test_no_container_env_holds_a_secret(render: Render, values_files: tuple[Any, ...]) -> None:
    documents = render(values_files=list(values_files))
    assert by_kind(documents, "Deployment"), "nothing rendered"
    findings = [line for doc in documents for line in secret_env_findings(doc)]
    assert findings == []


def _file_source(deployment: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount holding `path` and the volume behind it."""
    pod = deployment["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    for mount in main["volumeMounts"]:
        if PurePosixPath(path).parent == PurePosixPath(mount["mountPath"]):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            return mount, volume
    raise AssertionError(f"{path} is in no volume mount")


@pytest.mark.parametrize("service", SERVICES)
def test_password_files_come_from_their_secrets_read_only(render: Render, service: str) -> None:
    deployment = by_kind(render(), "Deployment")[service]
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry.get("value") for entry in main["env"]}
    expected = {
        "KAFKA_SASL_PASSWORD_FILE": (f"starling-{service}", "password"),
        "STORE_PASSWORD_FILE": ("starling-store", "password"),
        "STORE_CA_FILE": ("starling-internal-ca", "ca.crt"),
    }
    for variable, (secret_name, key) in expected.items():
        mount, volume = _file_source(deployment, env[variable])
        assert mount.get("readOnly") is True, variable
        assert volume["secret"]["secretName"] == secret_name, variable
        assert volume["secret"]["items"] == [
            {"key": key, "path": PurePosixPath(env[variable]).name}
        ]
        if variable != "STORE_CA_FILE":
            # Owner and the pod's fsGroup only: the process runs as that group.
            assert volume["secret"]["defaultMode"] == 0o440, variable
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["fsGroup"] == pod_security["runAsGroup"]
    assert env["STORE_TLS"] == "true"


def test_store_tls_off_drops_the_ca(render: Render) -> None:
    deployment = by_kind(render(set_values={"store.tls.enabled": "false"}), "Deployment")["trends"]
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {entry["name"] for entry in main["env"]}
    assert "STORE_TLS" not in names and "STORE_CA_FILE" not in names
    assert "store-ca" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
