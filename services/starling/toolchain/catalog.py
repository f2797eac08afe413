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
    # The binary `go install` writes is named after the package's last path element.
    binary: str = field(default="")

    def __post_init__(self) -> None:
        if not self.package.startswith(self.module):
            raise ValueError(f"{self.name}: package {self.package} is not inside {self.module}")
        if not self.binary:
            object.__setattr__(self, "binary", _binary_name(self.package))

    @property
    def versioned_name(self) -> str:
        return f"{self.name}-{self.version}"


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
)


def tool_named(name: str) -> GoTool:
    """The table entry for `name`; a clear error listing what exists otherwise."""
    for tool in TOOLS:
        if tool.name == name:
            return tool
    known = ", ".join(tool.name for tool in TOOLS)
    raise KeyError(f"unknown tool {name!r}; known tools: {known}")
