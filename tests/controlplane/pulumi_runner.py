"""Drive the real Pulumi engine over the `ci` stack of this repository's program.

How the program reaches the engine: the Pulumi CLI normally starts the Python language host
(`pulumi-language-python`), which runs `infra/__main__.py`. That host is a Go module the
module proxy here refuses (its version list, `@latest` and the pseudo-versions of release
commits tried all answer 403), so it cannot be built. Pulumi's Automation API has a
second, supported path that needs no language host: an *inline program*. The Python SDK
serves the language-runtime gRPC interface itself and the CLI (`pulumi up
--client=<address>`) talks to it. The program function below executes `infra/__main__.py`
exactly as the host would, so the resource graph, config validation and the engine,
provider and API server behaviour are the same; only who executes the Python differs.
Every step is still a real CLI command (`pulumi preview`, `up`, `destroy`, `config set
--secret`) against a local `file://` backend.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulumi
from pulumi import automation as auto

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
PROJECT = "starling"
STACK = "ci"
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
# Kinds whose await stays on even in CI: a CRD must be Established before the custom
# resources that depend on it are sent, and a Namespace's deletion must finish (the
# controller manager's namespace controller empties it) before `destroy` reports success.
_AWAIT_KEPT = frozenset(
    {
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",
        "kubernetes:core/v1:Namespace",
    }
)

Report = Callable[[str], None]
Result = TypeVar("Result")


def skip_await_transform(
    args: pulumi.ResourceTransformArgs,
) -> pulumi.ResourceTransformResult | None:
    """Stack transform for a cluster without nodes: no workload ever becomes Ready, so
    Pulumi must not wait for readiness (it would time out after 10 minutes per resource)."""
    if not args.type_.startswith("kubernetes:") or args.type_ in _AWAIT_KEPT:
        return None
    props = dict(args.props)
    if args.type_ == "kubernetes:helm.sh/v3:Release":
        # Embedded Helm's `--wait`; the release's own resources are not Pulumi resources.
        props["skipAwait"] = True
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)
    metadata = props.get("metadata")
    if not isinstance(metadata, Mapping):
        return None  # components (ConfigGroup) carry no metadata; their children do
    annotations = dict(metadata.get("annotations") or {})
    annotations[SKIP_AWAIT_ANNOTATION] = "true"
    props["metadata"] = {**metadata, "annotations": annotations}
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


def run_infra_program() -> None:
    """The inline program: `infra/__main__.py` as the language host would run it."""
    pulumi.runtime.register_resource_transform(skip_await_transform)
    if str(INFRA_DIR) not in sys.path:
        sys.path.insert(0, str(INFRA_DIR))
    runpy.run_path(str(INFRA_DIR / "__main__.py"), run_name="__main__")


@dataclass
class StepLog:
    """What one engine run did, from its event stream: (op, type, name, changed keys)."""

    steps: list[tuple[str, str, str, tuple[str, ...]]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)

    def record(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            metadata = event.resource_pre_event.metadata
            self.steps.append(
                (
                    metadata.op.value,
                    metadata.type,
                    metadata.urn.rsplit("::", 1)[-1],
                    tuple(metadata.diffs or ()),
                )
            )
        if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            self.diagnostics.append(event.diagnostic_event.message)

    def changed(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """Steps other than `same` (and the stack/provider bookkeeping)."""
        return [
            step
            for step in self.steps
            if step[0] not in ("same", "read") and not step[1].startswith("pulumi:")
        ]


class CiStack:
    """The `ci` stack in a scratch work directory, with its own backend and PULUMI_HOME."""

    def __init__(
        self,
        *,
        scratch: Path,
        kubeconfig: Path,
        pulumi_binary: Path,
        provider_binary: Path,
        seed: str,
        report: Report,
    ) -> None:
        self.scratch = scratch
        self.report = report
        work_dir = scratch / "project"
        work_dir.mkdir(parents=True)
        # A copy of the project file and of the committed stack file: `config set` writes
        # the encrypted seed (and the encryption salt) into the copy, never into the repo.
        shutil.copy(REPO_ROOT / "Pulumi.yaml", work_dir / "Pulumi.yaml")
        shutil.copy(REPO_ROOT / f"Pulumi.{STACK}.yaml", work_dir / f"Pulumi.{STACK}.yaml")
        # `main: infra/` must exist for the CLI's project checks; the code runs from the repo.
        (work_dir / "infra").symlink_to(INFRA_DIR, target_is_directory=True)
        self.work_dir = work_dir
        state = scratch / "state"
        state.mkdir()
        home = scratch / "pulumi-home"
        home.mkdir()
        tool_path = os.pathsep.join(
            dict.fromkeys([str(pulumi_binary.parent), str(provider_binary.parent)])
        )
        self.env = {
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_HOME": str(home),
            "PULUMI_CONFIG_PASSPHRASE": "starling-controlplane-tests",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            # The provider is found on PATH (an "ambient" plugin), as the engine allows.
            "PATH": f"{tool_path}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig),
        }
        self.command = auto.PulumiCommand(root=str(pulumi_binary.parent.parent))
        started = time.monotonic()
        self.stack = auto.create_or_select_stack(
            stack_name=STACK,
            project_name=PROJECT,
            program=run_infra_program,
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(work_dir),
                pulumi_home=str(home),
                env_vars=self.env,
                pulumi_command=self.command,
            ),
        )
        self.report(f"$ pulumi stack select --create {STACK}  ({time.monotonic() - started:.1f} s)")
        self.set_config("starling:secretSeed", seed, secret=True)

    def set_config(self, key: str, value: str, *, secret: bool = False) -> None:
        started = time.monotonic()
        self.stack.set_config(key, auto.ConfigValue(value=value, secret=secret))
        flag = " --secret" if secret else ""
        shown = "[secret]" if secret else value
        self.report(
            f"$ pulumi config set{flag} {key} {shown}  ({time.monotonic() - started:.1f} s)"
        )

    def preview(self, *, expect_no_changes: bool = False) -> tuple[auto.PreviewResult, StepLog]:
        log = StepLog()
        flag = " --expect-no-changes" if expect_no_changes else ""
        result = self._timed(
            f"pulumi preview --diff{flag}",
            lambda: self.stack.preview(
                diff=True, expect_no_changes=expect_no_changes, on_event=log.record, color="never"
            ),
        )
        return result, log

    def up(self) -> tuple[auto.UpResult, StepLog]:
        log = StepLog()
        result = self._timed(
            "pulumi up --yes",
            lambda: self.stack.up(on_event=log.record, color="never"),
        )
        return result, log

    def destroy(self) -> auto.DestroyResult:
        return self._timed(
            "pulumi destroy --yes",
            lambda: self.stack.destroy(color="never"),
        )

    def outputs(self) -> dict[str, Any]:
        return {key: value.value for key, value in self.stack.outputs().items()}

    def _timed(self, label: str, run: Callable[[], Result]) -> Result:
        self.report(f"$ {label} ...")
        started = time.monotonic()
        try:
            result = run()
        except auto.CommandError as error:
            self.report(f"$ {label} FAILED after {time.monotonic() - started:.1f} s")
            raise AssertionError(f"`{label}` failed:\n{error}") from error
        self.report(f"$ {label}  ({time.monotonic() - started:.1f} s)")
        return result
