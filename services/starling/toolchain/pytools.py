"""Python command-line tools kept out of the project's lock, each in its own venv.

checkov pins dozens of libraries (boto3, networkx, jsonschema, ...) at versions that
would fight the project's own pins, so it is installed from PyPI into a venv of its own,
cached per version next to the Go tools: `cache_root()/tools/checkov-<version>/`.
As with the Go tools, a finished install is recognised by its manifest, written last,
and an interrupted one is never mistaken for a finished one.

`python -m starling.toolchain.pytools` installs every such tool (what `make tools` runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from starling.toolchain.build import Progress, ToolBuildError, _exclusive_lock, tools_root

MANIFEST_NAME = "starling-tool.json"
INSTALL_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class PyTool:
    name: str
    requirement: str  # exactly one pinned distribution: `name==version`
    python: str  # the interpreter version uv creates the venv with
    command: str  # the console script inside the venv's bin/

    @property
    def version(self) -> str:
        return self.requirement.split("==", 1)[1]

    @property
    def versioned_name(self) -> str:
        return f"{self.name}-{self.version}"

    def recipe(self) -> dict[str, str]:
        return {"requirement": self.requirement, "python": self.python}


CHECKOV = PyTool(name="checkov", requirement="checkov==3.3.30", python="3.11", command="checkov")
PY_TOOLS: tuple[PyTool, ...] = (CHECKOV,)


def cached_py_tool(tool: PyTool) -> Path | None:
    home = tools_root() / tool.versioned_name
    binary = home / "venv" / "bin" / tool.command
    try:
        manifest = json.loads((home / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != tool.recipe() or not os.access(binary, os.X_OK):
        return None
    return binary


def ensure_py_tool(tool: PyTool, *, progress: Progress | None = None) -> Path:
    """The tool's console script, installing it into its own venv on a cache miss."""
    report = progress if progress is not None else _print
    found = cached_py_tool(tool)
    if found is not None:
        return found
    tools_root().mkdir(parents=True, exist_ok=True)
    lock = tools_root() / f".{tool.versioned_name}.lock"

    def waiting() -> None:
        report(f"[{tool.versioned_name}] another process is installing it; waiting ...")

    with _exclusive_lock(lock, on_wait=waiting):
        found = cached_py_tool(tool)
        if found is not None:
            return found
        return _install(tool, report)


def _install(tool: PyTool, report: Progress) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        raise ToolBuildError(
            f"cannot install {tool.requirement}: no `uv` on PATH (run `make setup`, "
            "which installs it)"
        )
    final = tools_root() / tool.versioned_name
    report(f"[{tool.versioned_name}] installing {tool.requirement} into its own venv ...")
    started = time.monotonic()
    # A venv's scripts carry its absolute path in their shebang, so it is created where
    # it will live; the manifest, written last, is what marks it finished.
    final.mkdir(exist_ok=True)
    shutil.rmtree(final / "venv", ignore_errors=True)
    (final / MANIFEST_NAME).unlink(missing_ok=True)
    venv = final / "venv"
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    for command in (
        [uv, "venv", "--quiet", "--python", tool.python, str(venv)],
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            tool.requirement,
        ],
    ):
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-20:])
            raise ToolBuildError(
                f"installing {tool.requirement} failed: `{' '.join(command[:3])}` exited "
                f"with {result.returncode}:\n{tail}"
            )
    elapsed = time.monotonic() - started
    manifest = {"recipe": tool.recipe(), "install_seconds": round(elapsed, 1)}
    (final / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    report(f"[{tool.versioned_name}] installed in {elapsed:.0f} s")
    return venv / "bin" / tool.command


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> int:
    try:
        for tool in PY_TOOLS:
            print(ensure_py_tool(tool))
    except ToolBuildError as error:
        print(f"starling tools: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
