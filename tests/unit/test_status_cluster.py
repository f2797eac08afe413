"""`starling status --kube-context`'s one-line refusals (an unknown context, an API server
that does not answer) and its names agreeing with the infra program's."""

from __future__ import annotations

import argparse
import importlib
import json
import socket
import sys
from pathlib import Path

import pytest

from starling.harness import cluster_status
from starling.harness.stack_cli import register

pytestmark = pytest.mark.unit


def run_status(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["status", *argv])
    return int(args.handler(args))


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": {"server": server}}],
                "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "kind-starling", "context": {"cluster": "dev", "user": "me"}},
                    {"name": "other", "context": {"cluster": "dev", "user": "me"}},
                ],
                "current-context": "kind-starling",
            }
        )
    )
    return path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_unknown_context_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_kubeconfig(tmp_path / "config", "https://127.0.0.1:6443")
    code = run_status(["--kube-context", "prod-eu", "--kubeconfig", str(config)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith("starling status: context 'prod-eu' is not in kubeconfig")
    assert str(config) in line
    assert "kind-starling, other" in line
    assert "--kube-context" in line
    assert "not-a-real-token" not in captured.err


def test_missing_kubeconfig_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "config"
    code = run_status(["--kube-context", "kind-starling", "--kubeconfig", str(missing)])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert f"cannot read kubeconfig {missing}" in line
    assert "--kubeconfig" in line


def test_kubeconfig_without_context_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_kubeconfig(tmp_path / "config", "https://127.0.0.1:6443")
    assert run_status(["--kubeconfig", str(config)]) == 1
    assert one_line(capsys.readouterr().err) == (
        "starling status: --kubeconfig needs --kube-context <context>"
    )


def test_unreachable_api_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port that was just free and has no listener: the connection is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = f"https://127.0.0.1:{port}"
    config = write_kubeconfig(tmp_path / "config", server)
    code = run_status(["--kube-context", "other", "--kubeconfig", str(config)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    line = one_line(captured.err)
    assert f"API server {server} (context 'other') is unreachable" in line
    assert "not-a-real-token" not in line


def test_names_match_the_infra_program() -> None:
    # The infra program is not part of the package; its tests import it from infra/.
    infra = Path(__file__).resolve().parents[2] / "infra"
    if str(infra) not in sys.path:
        sys.path.insert(0, str(infra))
    meta = importlib.import_module("starling_infra.meta")
    assert cluster_status.NAMESPACE == meta.NAMESPACE
    assert cluster_status.AIRFLOW_NAMESPACE == meta.AIRFLOW_NAMESPACE
    assert cluster_status.OPERATOR_NAMESPACE == meta.OPERATOR_NAMESPACE
    assert cluster_status.AIRFLOW_RELEASE == meta.AIRFLOW_RELEASE
    assert f"/apis/{meta.STRIMZI_API_VERSION}" == cluster_status.STRIMZI_API


def test_client_certificate_files_resolve_next_to_the_kubeconfig(tmp_path: Path) -> None:
    # kubectl resolves relative credential paths against the kubeconfig's directory.
    (tmp_path / "ca.crt").write_bytes(b"ca-pem")
    (tmp_path / "me.crt").write_bytes(b"cert-pem")
    (tmp_path / "me.key").write_bytes(b"key-pem")
    (tmp_path / "config").write_text(
        json.dumps(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://10.0.0.1:6443/",
                            "certificate-authority": "ca.crt",
                        },
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {"client-certificate": "me.crt", "client-key": "me.key"},
                    }
                ],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    access = cluster_status.load_access(tmp_path / "config", "ctx")
    assert access.server == "https://10.0.0.1:6443"
    assert (access.ca_pem, access.client_cert_pem, access.client_key_pem) == (
        b"ca-pem",
        b"cert-pem",
        b"key-pem",
    )
    assert access.token is None


def test_exec_plugin_contexts_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://eks.example"}}],
                "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}],
                "contexts": [{"name": "eks", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    with pytest.raises(cluster_status.ClusterStatusError, match="exec/auth-provider plugin"):
        cluster_status.load_access(tmp_path / "config", "eks")
