"""The Go-built helm the chart tests use: versioned cache, reuse, clear build failures.

(These cover starling.toolchain through the one tool it builds today; they sit with the
chart tests because those are what need helm.)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from starling.paths import cache_root
from starling.toolchain import GoTool, ToolBuildError, cached_tool, ensure_tool, tool_named
from starling.toolchain import cli as tools_cli
from starling.toolchain.build import MANIFEST_NAME, recipe_of, wrapper_go_mod

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]


def test_helm_lives_in_its_versioned_cache_directory(helm: Path) -> None:
    assert helm == cache_root() / "tools" / "helm-v3.22.0" / "bin" / "helm"
    manifest = json.loads((helm.parent.parent / MANIFEST_NAME).read_text())
    assert manifest["recipe"] == recipe_of(tool_named("helm"))
    assert manifest["binary_bytes"] == helm.stat().st_size


def test_warm_cache_is_reused_without_building(helm: Path) -> None:
    progress: list[str] = []
    assert ensure_tool("helm", progress=progress.append) == helm
    assert progress == []


def test_a_changed_recipe_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_CACHE", str(tmp_path))
    tool = GoTool(
        name="demo",
        module="example.com/demo",
        package="example.com/demo/cmd/demo",
        version="v1.0.0",
        ldflags="-s -w",
    )
    home = tmp_path / "tools" / "demo-v1.0.0"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "demo").write_text("#!/bin/sh\n")
    os.chmod(home / "bin" / "demo", 0o755)

    (home / MANIFEST_NAME).write_text(json.dumps({"recipe": recipe_of(tool)}))
    assert cached_tool(tool) == home / "bin" / "demo"
    relinked = GoTool(
        name="demo",
        module="example.com/demo",
        package="example.com/demo/cmd/demo",
        version="v1.0.0",
        ldflags="-s -w -X main.version=v1.0.0",
    )
    assert cached_tool(relinked) is None
    (home / MANIFEST_NAME).unlink()
    assert cached_tool(tool) is None  # no manifest: an unfinished build, never "cached"


def test_failed_build_names_tool_version_and_go_output(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # helm's module is in Go's module cache once `helm` is built, so this fails fast.
    monkeypatch.setenv("STARLING_CACHE", str(tmp_path))
    broken = GoTool(
        name="broken",
        module="helm.sh/helm/v3",
        package="helm.sh/helm/v3/cmd/no-such-command",
        version="v3.22.0",
    )
    progress: list[str] = []
    with pytest.raises(ToolBuildError) as failure:
        ensure_tool(broken, progress=progress.append)
    message = str(failure.value)
    assert "building broken v3.22.0" in message
    assert "Last lines of go's output" in message
    assert "no-such-command" in message.split("Last lines of go's output", 1)[1]
    assert progress and progress[0].startswith("[broken v3.22.0] building")
    # Nothing that could pass for a cached build is left behind.
    leftovers = sorted(path.name for path in (tmp_path / "tools").iterdir())
    assert leftovers == [".broken-v3.22.0.lock"]


def test_binary_is_named_after_the_command_not_its_major_version() -> None:
    tool = GoTool(
        name="x",
        module="example.com/x/v3",
        package="example.com/x/v3/cmd/xctl/v3",
        version="v3.0.0",
    )
    assert tool.binary == "xctl"
    assert tool_named("helm").binary == "helm"


def test_package_outside_the_module_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside"):
        GoTool(name="x", module="example.com/x", package="example.org/y/cmd/y", version="v1.0.0")


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known tools: helm"):
        tool_named("kubectl")


def test_wrapper_module_carries_requires_and_replaces() -> None:
    tool = GoTool(
        name="apiserver",
        module="k8s.io/kubernetes",
        package="k8s.io/kubernetes/cmd/kube-apiserver",
        version="v1.37.0",
        extra_requires=(("k8s.io/api", "v0.37.0"),),
        replaces=(("k8s.io/api", "k8s.io/api", "v0.37.0"),),
    )
    go_mod = wrapper_go_mod(tool, "1.26.8")
    assert "module starling.invalid/toolbuild/apiserver\n" in go_mod
    assert "go 1.26.8\n" in go_mod
    assert "\tk8s.io/kubernetes v1.37.0\n\tk8s.io/api v0.37.0\n" in go_mod
    assert "replace (\n\tk8s.io/api => k8s.io/api v0.37.0\n)" in go_mod


def _tools_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starling")
    tools_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_path_prints_the_binary(helm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _tools_parser().parse_args(["tools", "path", "helm"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(helm)


def test_cli_rejects_unknown_tools_before_building(capsys: pytest.CaptureFixture[str]) -> None:
    args = _tools_parser().parse_args(["tools", "build", "helm", "kubectl"])
    assert args.handler(args) == 1
    assert "unknown tool 'kubectl'; known tools: helm" in capsys.readouterr().err
