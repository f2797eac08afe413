"""Fixtures for chart tests: a real `helm` (built from the Go module proxy on a cold
cache) and a `render` function returning the parsed documents of `helm template`."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[3] / "charts" / "starling-services"
CI_VALUES = sorted((CHART_DIR / "ci").glob("values-*.yaml"))
SERVICES = ("ingestion", "trends", "timelines", "notifier", "gateway", "identity")
RELEASE = "starling"
NAMESPACE = "starling"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


class HelmError(AssertionError):
    """`helm` exited non-zero; the message carries its stderr."""


@pytest.fixture(scope="session")
def helm(go_tool: Callable[[str], Path]) -> Path:
    """The pinned helm binary. A cold cache builds it here (minutes), progress shown live;
    only helm: the chart tests never wait for the control-plane tools."""
    return go_tool("helm")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="session")
def render(helm: Path) -> Iterator[Render]:
    """`render(values_files=..., set_values=..., release=..., namespace=...)` -> documents.

    Renders are memoised per argument set: many tests look at the same scenario.
    """
    cache: dict[tuple[Any, ...], list[Manifest]] = {}

    def _render(
        values_files: Sequence[Path] = (),
        set_values: Mapping[str, str] | None = None,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> list[Manifest]:
        sets = tuple(sorted((set_values or {}).items()))
        key = (tuple(values_files), sets, release, namespace)
        if key not in cache:
            cache[key] = template(helm, values_files, dict(sets), release, namespace)
        # Tests may mutate what they get; the cache keeps its own copy.
        return copy.deepcopy(cache[key])

    yield _render


def template(
    helm: Path,
    values_files: Sequence[Path] = (),
    set_values: Mapping[str, str] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    args = ["template", release, str(CHART_DIR), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    result = run_helm(helm, *args)
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(documents: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    """Objects of one kind keyed by their app.kubernetes.io/component label."""
    found: dict[str, Manifest] = {}
    for doc in documents:
        if doc["kind"] == kind:
            component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            name = doc["metadata"]["name"]
            # The gateway has two Services; key the metrics one by its suffix.
            key = f"{component}-metrics" if name.endswith("-metrics") else component
            found[key] = doc
    return found
