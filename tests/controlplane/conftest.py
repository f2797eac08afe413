"""Fixtures for the control-plane tier: a real etcd + kube-apiserver + controller manager,
and the real Pulumi CLI and Kubernetes provider (all built from Go modules, cached).

Nothing here skips on its own: a tool that cannot be built fails the session with the
build's error. For quick local runs, `STARLING_SKIP_CONTROLPLANE=1` skips the tier with a
one-line reason.

Progress (builds, each pulumi command and its duration) is printed live through pytest's
output capture, because a cold run spends minutes in single steps.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starling.harness.controlplane import ControlPlane

SKIP_VARIABLE = "STARLING_SKIP_CONTROLPLANE"
CONTROLPLANE_FIXTURES = frozenset({"control_plane", "pulumi_tools", "live"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CONTROLPLANE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def live(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line now, through pytest's capture (a cold build takes many minutes)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def report(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    return report


def _skip_if_asked() -> None:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: control-plane tier skipped for a quick local run")


@pytest.fixture(scope="session")
def control_plane(live: Callable[[str], None]) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager with the Strimzi CRDs installed,
    for the whole session; `control_plane.kubeconfig` and `control_plane.api()`."""
    _skip_if_asked()
    from starling.harness.controlplane import ControlPlane

    with ControlPlane.start(progress=live) as plane:
        yield plane


@pytest.fixture(scope="session")
def pulumi_tools(live: Callable[[str], None]) -> dict[str, Path]:
    """The Pulumi CLI and the Kubernetes provider plugin, built on a cache miss."""
    _skip_if_asked()
    from starling.toolchain import ensure_tool

    return {
        name: ensure_tool(name, progress=live) for name in ("pulumi", "pulumi-resource-kubernetes")
    }


@pytest.fixture(scope="session")
def stack_seed() -> str:
    return secrets.token_hex(32)
