"""The table of Go-built tools: one `GoTool` per binary, pinned to a module version.

Adding a tool is adding an entry here (see docs/tools.md). The build recipe is the same
for all of them: a throwaway wrapper module requires `module@version` (plus any
`extra_requires` / `replaces` the tool needs to resolve), then `go install`s `package`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True)
class GoTool:
    """How to build one binary from the Go module proxy.

    `ldflags` are passed verbatim to `go install -ldflags`; tools that print their own
    version read it from a variable only a release build sets, so the pin goes there.
    """

    name: str
    module: str
    package: str
    version: str
    ldflags: str = ""
    # Further `require` lines for the wrapper module, e.g. the Pulumi CLI needs
    # `sdk/v3` at the same version as `pkg/v3`.
    extra_requires: tuple[tuple[str, str], ...] = ()
    # `replace old => new version` lines; a dependency's own replaces are ignored by Go
    # when it is not the main module, so the wrapper must restate the ones that matter
    # (k8s.io/kubernetes pins its staging modules at v0.0.0 through replaces).
    replaces: tuple[tuple[str, str, str], ...] = ()
    # The name the cached binary gets. Default: the name `go install` gives it (the
    # package's last path element); set it when that differs from the command's real
    # name (etcd's main package is the module root `go.etcd.io/etcd/server/v3`).
    binary: str = field(default="")
    # Build tags upstream's release build sets (e.g. the Pulumi CLI's `osusergo`).
    tags: tuple[str, ...] = ()
    # GOEXPERIMENT values upstream's release build sets (trivy: `jsonv2`).
    goexperiment: tuple[str, ...] = ()
    # A `main` package of our own instead of `package`'s: the name of a Go source file in
    # `starling/toolchain/mains/`, written into the wrapper module's root and built there.
    # For tools whose upstream main cannot build from the module zip (the Pulumi
    # Kubernetes provider embeds generated files that are not published).
    main_source: str = ""
    # Files copied from the tool module's own directory into the wrapper before the build,
    # `(path inside the module, name in the wrapper)`, so `main_source` can `//go:embed`
    # them (embed cannot reach into another module).
    module_files: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.package.startswith(self.module):
            raise ValueError(f"{self.name}: package {self.package} is not inside {self.module}")
        if self.module_files and not self.main_source:
            raise ValueError(f"{self.name}: module_files are only used by a main_source build")
        if not self.binary:
            object.__setattr__(self, "binary", _binary_name(self.package))

    @property
    def install_target(self) -> str:
        """What `go install` builds: upstream's package, or the wrapper's own main."""
        return "." if self.main_source else self.package

    @property
    def installed_name(self) -> str:
        """The file name `go install` writes into GOBIN, before any rename to `binary`."""
        if self.main_source:
            return _binary_name(wrapper_module_path(self))
        return _binary_name(self.package)

    @property
    def versioned_name(self) -> str:
        return f"{self.name}-{self.version}"


def wrapper_module_path(tool: GoTool) -> str:
    # A reserved top-level domain: this module is never published or fetched.
    return f"starling.invalid/toolbuild/{tool.name}"


def _binary_name(package: str) -> str:
    last = PurePosixPath(package).name
    # `.../cmd/foo/v3` installs as `foo`: a major-version suffix is not the command name.
    if last.startswith("v") and last[1:].isdigit():
        return PurePosixPath(package).parent.name
    return last


HELM_VERSION = "v3.22.0"
# helm v3.22.0 links k8s.io/client-go v0.37.0, i.e. Kubernetes 1.37.
HELM_KUBE_MAJOR = "1"
HELM_KUBE_MINOR = "37"

# etcd 3.7: the release line k8s.io/kubernetes v1.37 links its etcd client from
# (go.etcd.io/etcd/client/v3 v3.7.0), so the server speaks exactly what the apiserver expects.
ETCD_VERSION = "v3.7.3"

KUBERNETES_VERSION = "v1.37.2"
_KUBE_MAJOR, _KUBE_MINOR, _KUBE_PATCH = KUBERNETES_VERSION.removeprefix("v").split(".")
# The published staging modules carry the same release as v0.<minor>.<patch>.
KUBERNETES_STAGING_VERSION = f"v0.{_KUBE_MINOR}.{_KUBE_PATCH}"
# k8s.io/kubernetes requires these at v0.0.0 and replaces them with ./staging/src/...;
# outside its own repository only the published releases exist (the list is the
# staging modules its go.mod requires at v1.37.2).
KUBERNETES_STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "streaming",
)
_KUBERNETES_REPLACES = tuple(
    (f"k8s.io/{name}", f"k8s.io/{name}", KUBERNETES_STAGING_VERSION)
    for name in KUBERNETES_STAGING_MODULES
)
# What hack/lib/version.sh stamps into a release: clients (the Pulumi provider, client-go's
# discovery) read gitVersion; gitMajor/gitMinor feed /version's major/minor fields.
_KUBERNETES_LDFLAGS = " ".join(
    [
        "-s -w",
        *(
            f"-X {package}.{variable}={value}"
            for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for variable, value in (
                ("gitVersion", KUBERNETES_VERSION),
                ("gitMajor", _KUBE_MAJOR),
                ("gitMinor", _KUBE_MINOR),
                ("gitTreeState", "clean"),
            )
        ),
    ]
)

# The Pulumi CLI. PyPI's `pulumi` is at 3.272.0, but the Go module proxy serves
# github.com/pulumi/pulumi/pkg/v3 only at ... v3.252.0, v3.260.0, v3.274.0, v3.274.1
# (v3.270.0-v3.273.0 are refused). v3.260.0 is the newest version served for both
# pkg/v3 and sdk/v3 that PyPI also has; see docs/controlplane.md.
PULUMI_VERSION = "v3.260.0"

# The Kubernetes provider: github.com/pulumi/pulumi-kubernetes/provider/v4 has no tags;
# the proxy serves exactly one pseudo-version, the commit of 2026-01-15 that follows
# release 4.24.0 (its CHANGELOG's "Unreleased" section is on top of 4.24.0).
KUBERNETES_PROVIDER_VERSION = "v4.0.0-20260115033456-f47bc2d6f199"
# What the binary reports: upstream's development builds name the next minor as a
# prerelease, with the commit as build metadata.
KUBERNETES_PROVIDER_REPORTED = "4.25.0-alpha.0+f47bc2d6f199"

# Trivy, for its misconfiguration scan (`trivy config`) of what the program and chart
# render (docs/security-scan.md). Its built-in checks are compiled in from the
# trivy-checks module, so a scan with `--skip-check-update` needs no network.
TRIVY_VERSION = "v0.74.0"

TOOLS: tuple[GoTool, ...] = (
    GoTool(
        name="helm",
        module="helm.sh/helm/v3",
        package="helm.sh/helm/v3/cmd/helm",
        version=HELM_VERSION,
        # The flags upstream's Makefile sets for a release: -s -w drop the symbol table
        # and DWARF; version.version makes `helm version` report the release. The
        # Kubernetes version Helm assumes offline (`helm template`'s .Capabilities and
        # the lint deprecation check) defaults to a stale 1.20 unless set: the Makefile
        # derives it from the client-go it links (v0.37 -> Kubernetes 1.37).
        ldflags=" ".join(
            [
                "-s -w",
                f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={HELM_KUBE_MAJOR}",
                f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_KUBE_MINOR}",
                f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={HELM_KUBE_MAJOR}",
                f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_KUBE_MINOR}",
            ]
        ),
    ),
    GoTool(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        # The module root is etcd's main package; `go install` would name it `v3`'s parent.
        package="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binary="etcd",
        ldflags="-s -w",
    ),
    GoTool(
        name="kube-apiserver",
        module="k8s.io/kubernetes",
        package="k8s.io/kubernetes/cmd/kube-apiserver",
        version=KUBERNETES_VERSION,
        ldflags=_KUBERNETES_LDFLAGS,
        replaces=_KUBERNETES_REPLACES,
    ),
    GoTool(
        name="kube-controller-manager",
        module="k8s.io/kubernetes",
        package="k8s.io/kubernetes/cmd/kube-controller-manager",
        version=KUBERNETES_VERSION,
        ldflags=_KUBERNETES_LDFLAGS,
        replaces=_KUBERNETES_REPLACES,
    ),
    GoTool(
        name="pulumi",
        module="github.com/pulumi/pulumi/pkg/v3",
        package="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
        version=PULUMI_VERSION,
        # pkg/go.mod replaces sdk/v3 with ../sdk (the same commit); the published module
        # at the same version is that commit.
        extra_requires=(("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION),),
        # Restated from pkg/go.mod (Go ignores a dependency's replaces): upstream builds
        # against this fork of the clipboard module.
        replaces=(
            (
                "github.com/atotto/clipboard",
                "github.com/tgummerer/clipboard",
                "v0.0.0-20241001131231-d02d263e614e",
            ),
        ),
        # As upstream's .goreleaser.yml: the pure-Go os/user, and grpc without x/net/trace
        # (which would otherwise disable the linker's dead-code elimination).
        tags=("osusergo", "grpcnotrace"),
        ldflags=(
            "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=" + PULUMI_VERSION
        ),
    ),
    GoTool(
        name="pulumi-resource-kubernetes",
        module="github.com/pulumi/pulumi-kubernetes/provider/v4",
        package="github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes",
        version=KUBERNETES_PROVIDER_VERSION,
        main_source="pulumi_resource_kubernetes.go",
        # Committed next to upstream's main; its build embeds generated copies of them.
        module_files=(
            ("cmd/pulumi-resource-kubernetes/schema.json", "schema.json"),
            ("cmd/pulumi-resource-kubernetes/terraform-mapping.json", "terraform-mapping.json"),
        ),
        ldflags=(
            "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version="
            + KUBERNETES_PROVIDER_REPORTED
        ),
    ),
    GoTool(
        name="trivy",
        module="github.com/aquasecurity/trivy",
        package="github.com/aquasecurity/trivy/cmd/trivy",
        version=TRIVY_VERSION,
        # Trivy imports encoding/json/v2, which Go 1.26 builds only under this experiment.
        goexperiment=("jsonv2",),
        # As upstream's goreleaser.yml: `trivy --version` reads app.ver.
        ldflags=(
            "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver="
            + TRIVY_VERSION.removeprefix("v")
        ),
    ),
)


def tool_named(name: str) -> GoTool:
    """The table entry for `name`; a clear error listing what exists otherwise."""
    for tool in TOOLS:
        if tool.name == name:
            return tool
    known = ", ".join(tool.name for tool in TOOLS)
    raise KeyError(f"unknown tool {name!r}; known tools: {known}")
