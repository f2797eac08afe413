"""The kind tier runs against a cluster that `pulumi up` of the `dev` stack built
(.github/workflows/kind-e2e.yml does both). Anywhere else it skips, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

KIND_CONTEXT = os.environ.get("STARLING_KIND_CONTEXT", "kind-starling")


def _cluster_unavailable_reason() -> str | None:
    if shutil.which("kubectl") is None:
        return "no kubectl on this machine; the kind tier runs in .github/workflows/kind-e2e.yml"
    probe = subprocess.run(
        ["kubectl", "--context", KIND_CONTEXT, "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if probe.returncode != 0:
        return f"no reachable kind cluster (context {KIND_CONTEXT}); create it and `pulumi up` dev"
    return None


@pytest.fixture(scope="session")
def kind_context() -> str:
    reason = _cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return KIND_CONTEXT
