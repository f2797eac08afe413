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
    from tests.controlplane.pulumi_runner import CiStack

SKIP_VARIABLE = "STARLING_SKIP_CONTROLPLANE"
CONTROLPLANE_FIXTURES = frozenset({"control_plane", "pulumi_tools", "live"})
# The Go-built tools this tier needs (built on first use; docs/tools.md).
CONTROL_PLANE_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager")
PULUMI_TOOLS = ("pulumi", "pulumi-resource-kubernetes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CONTROLPLANE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def live(tool_progress: Callable[[str], None]) -> Callable[[str], None]:
    """Print a line now, through pytest's capture (a cold build takes many minutes)."""
    return tool_progress


def _skip_if_asked() -> None:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: control-plane tier skipped for a quick local run")


@pytest.fixture(scope="session")
def control_plane(
    live: Callable[[str], None], go_tool: Callable[[str], Path]
) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager with the Strimzi CRDs installed,
    for the whole session; `control_plane.kubeconfig` and `control_plane.api()`."""
    _skip_if_asked()
    from starling.harness.controlplane import ControlPlane

    # Built (on a cold cache) through go_tool first, so the terminal says which tool is
    # missing and why it is being built; the harness then finds them cached.
    for name in CONTROL_PLANE_TOOLS:
        go_tool(name)
    with ControlPlane.start(progress=live) as plane:
        yield plane


@pytest.fixture(scope="session")
def pulumi_tools(go_tool: Callable[[str], Path]) -> dict[str, Path]:
    """The Pulumi CLI and the Kubernetes provider plugin, built on a cache miss."""
    _skip_if_asked()
    return {name: go_tool(name) for name in PULUMI_TOOLS}


@pytest.fixture(scope="session")
def stack_seed() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def new_ci_stack(
    control_plane: ControlPlane,
    pulumi_tools: dict[str, Path],
    stack_seed: str,
    tmp_path_factory: pytest.TempPathFactory,
    live: Callable[[str], None],
) -> Callable[[str], CiStack]:
    """A `ci` stack in a fresh scratch directory, on a cluster without the fixture's
    Strimzi CRDs: the stack applies them itself (strimzi.crdsFrom: directory), and copies
    the fixture installed would be another field manager's, whose differing fields
    server-side apply reports as conflicts; a fresh cluster has none either."""
    from starling.harness.controlplane import default_strimzi_crds_dir
    from tests.controlplane.pulumi_runner import CiStack

    def new(name: str) -> CiStack:
        control_plane.remove_crds(default_strimzi_crds_dir())
        return CiStack(
            scratch=tmp_path_factory.mktemp(name),
            kubeconfig=control_plane.kubeconfig,
            pulumi_binary=pulumi_tools["pulumi"],
            provider_binary=pulumi_tools["pulumi-resource-kubernetes"],
            seed=stack_seed,
            report=live,
        )

    return new
