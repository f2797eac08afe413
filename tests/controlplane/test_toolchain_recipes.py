"""The control-plane rows of the tool table and the recipe extensions they use (no build)."""

from __future__ import annotations

import pytest

from starling.toolchain import GoTool, tool_named
from starling.toolchain.build import main_source_text, recipe_of, wrapper_go_mod
from starling.toolchain.catalog import (
    KUBERNETES_STAGING_VERSION,
    KUBERNETES_VERSION,
    PULUMI_VERSION,
)

pytestmark = pytest.mark.unit


def test_helm_recipe_keeps_its_original_keys() -> None:
    # The recipe is what "cached" compares; new optional keys must not invalidate the helm
    # binaries already cached on every machine.
    assert set(recipe_of(tool_named("helm"))) == {
        "name",
        "module",
        "package",
        "version",
        "ldflags",
        "extra_requires",
        "replaces",
    }


def test_etcd_is_installed_from_the_module_root_and_renamed() -> None:
    etcd = tool_named("etcd")
    assert etcd.installed_name == "server"  # what `go install go.etcd.io/etcd/server/v3` writes
    assert etcd.binary == "etcd"
    assert recipe_of(etcd)["binary"] == "etcd"


@pytest.mark.parametrize("name", ["kube-apiserver", "kube-controller-manager"])
def test_kubernetes_tools_replace_every_staging_module_with_its_release(name: str) -> None:
    tool = tool_named(name)
    assert tool.version == KUBERNETES_VERSION
    replaced = {old: (new, version) for old, new, version in tool.replaces}
    assert replaced["k8s.io/api"] == ("k8s.io/api", KUBERNETES_STAGING_VERSION)
    assert replaced["k8s.io/apiserver"] == ("k8s.io/apiserver", KUBERNETES_STAGING_VERSION)
    assert {version for _, version in replaced.values()} == {KUBERNETES_STAGING_VERSION}
    assert f"k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}" in tool.ldflags
    assert "k8s.io/component-base/version.gitMinor=37" in tool.ldflags


def test_pulumi_cli_requires_sdk_at_its_own_version() -> None:
    pulumi = tool_named("pulumi")
    assert pulumi.extra_requires == (("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION),)
    assert f"version.Version={PULUMI_VERSION}" in pulumi.ldflags
    go_mod = wrapper_go_mod(pulumi, "1.26.8")
    assert "github.com/atotto/clipboard => github.com/tgummerer/clipboard" in go_mod


def test_provider_builds_our_main_with_the_committed_schema() -> None:
    provider = tool_named("pulumi-resource-kubernetes")
    assert provider.install_target == "."
    assert provider.installed_name == provider.binary == "pulumi-resource-kubernetes"
    source = main_source_text(provider)
    for _, wrapper_name in provider.module_files:
        assert f"//go:embed {wrapper_name}" in source
    recipe = recipe_of(provider)
    assert recipe["main_source"]["name"] == "pulumi_resource_kubernetes.go"
    assert len(recipe["main_source"]["sha256"]) == 64


def test_module_files_without_an_own_main_are_refused() -> None:
    with pytest.raises(ValueError, match="main_source"):
        GoTool(
            name="x",
            module="example.com/x",
            package="example.com/x/cmd/x",
            version="v1.0.0",
            module_files=(("a.json", "a.json"),),
        )
