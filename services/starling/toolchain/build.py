"""Build a `GoTool` into its versioned cache directory, or reuse what is already there.

Layout: `cache_root()/tools/<name>-<version>/` holds `bin/<binary>`, the wrapper module
the build used (`wrapper/go.mod`, `wrapper/go.sum`: the exact dependency versions), and
`starling-tool.json`, written last, whose presence and matching recipe is what "cached"
means. Builds run in a temporary sibling directory that is renamed into place only when
complete, so an interrupted build never looks cached. Go's own module and build caches
(`go env GOMODCACHE GOCACHE`) are used as they are: the tools share most dependencies,
and a warm Go cache makes a version bump cheap.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starling.paths import cache_root
from starling.toolchain.catalog import GoTool, tool_named, wrapper_module_path

Progress = Callable[[str], None]

MANIFEST_NAME = "starling-tool.json"
# Enough of go's output to show the failing package and the compiler's complaint.
ERROR_TAIL_LINES = 40
HEARTBEAT_SECONDS = 15.0
# Where the official Go tarball installs when its bin directory is not on PATH.
_FALLBACK_GO = Path("/usr/local/go/bin/go")


class ToolBuildError(RuntimeError):
    """A tool could not be built; the message names the tool, version and go's output."""


def tools_root() -> Path:
    return cache_root() / "tools"


def tool_dir(tool: GoTool | str) -> Path:
    """The cache directory of one tool version (it may not exist yet)."""
    resolved = tool_named(tool) if isinstance(tool, str) else tool
    return tools_root() / resolved.versioned_name


def cached_tool(tool: GoTool | str) -> Path | None:
    """The cached binary when a finished build of this exact recipe exists, else None."""
    resolved = tool_named(tool) if isinstance(tool, str) else tool
    home = tool_dir(resolved)
    binary = home / "bin" / resolved.binary
    try:
        manifest = json.loads((home / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    # A changed ldflag or replace under the same version must not reuse the old binary.
    if manifest.get("recipe") != recipe_of(resolved) or not os.access(binary, os.X_OK):
        return None
    return binary


def ensure_tool(tool: GoTool | str, *, progress: Progress | None = None) -> Path:
    """Path to the pinned binary of `tool` (a name in TOOLS, or an entry), building it
    from Go modules on a cache miss. Raises ToolBuildError when the build fails."""
    resolved = tool_named(tool) if isinstance(tool, str) else tool
    report = progress if progress is not None else _print_progress
    cached = cached_tool(resolved)
    if cached is not None:
        return cached
    tools_root().mkdir(parents=True, exist_ok=True)
    # Two test sessions (or a test and `starling tools build`) may want the same tool at
    # once; the second waits for the first and then reuses its result.
    lock = tools_root() / f".{resolved.versioned_name}.lock"

    def waiting() -> None:
        # Without this line a second test session sits silent for the other's whole build.
        report(
            f"[{resolved.name} {resolved.version}] another process is building it "
            f"(lock {lock}); waiting to reuse its result ..."
        )

    with _exclusive_lock(lock, on_wait=waiting):
        cached = cached_tool(resolved)
        if cached is not None:
            return cached
        # Holding the lock, any staging directory of this tool is an interrupted build.
        for leftover in tools_root().glob(f".{resolved.versioned_name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return _build(resolved, report)


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    if os.access(_FALLBACK_GO, os.X_OK):
        return str(_FALLBACK_GO)
    raise ToolBuildError(
        "cannot build Go tools: no `go` on PATH or at /usr/local/go/bin/go "
        "(install Go >= 1.24 and put its bin directory on PATH)"
    )


def _build(tool: GoTool, report: Progress) -> Path:
    go = find_go()
    final_home = tool_dir(tool)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{tool.versioned_name}.partial-", dir=final_home.parent)
    )
    label = f"{tool.name} {tool.version}"
    try:
        wrapper = staging / "wrapper"
        wrapper.mkdir()
        (wrapper / "go.mod").write_text(wrapper_go_mod(tool, _go_language_version(go)))
        report(f"[{label}] building {tool.package} with {go} (cold: several minutes) ...")
        started = time.monotonic()
        env = _build_env(staging / "bin", tool)
        if tool.main_source:
            _write_own_main(go, tool, wrapper, env, label)
        _run_go_install(go, tool, wrapper, env, label, report)
        _check_pinned_version(go, tool, wrapper, env, label)
        elapsed = time.monotonic() - started
        installed = staging / "bin" / tool.installed_name
        binary = staging / "bin" / tool.binary
        if not installed.is_file():
            raise ToolBuildError(
                f"building {label}: go install succeeded but wrote no {tool.installed_name} "
                f"into {installed.parent} (check the package of {tool.name})"
            )
        if installed != binary:
            installed.rename(binary)
        size = binary.stat().st_size
        manifest: dict[str, Any] = {
            "recipe": recipe_of(tool),
            "go": _go_version(go),
            "build_seconds": round(elapsed, 1),
            "binary_bytes": size,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(staging, final_home)
        report(f"[{label}] built in {elapsed:.0f} s, {size / 1e6:.1f} MB -> {final_home}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = cached_tool(tool)
    if result is None:  # pragma: no cover - only if the cache vanished under us
        raise ToolBuildError(f"{label}: cache at {final_home} is incomplete after the build")
    return result


def _move_into_place(staging: Path, final_home: Path) -> None:
    # A stale build of an older recipe (same version, different flags) is set aside
    # first; rename() cannot replace a non-empty directory.
    if final_home.exists():
        stale = final_home.with_name(f".{final_home.name}.stale-{os.getpid()}")
        final_home.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging.rename(final_home)


def main_source_text(tool: GoTool) -> str:
    """The Go source of a tool's own `main` (`GoTool.main_source`), shipped as package data."""
    resource = importlib.resources.files("starling.toolchain") / "mains" / tool.main_source
    return resource.read_text(encoding="utf-8")


def _write_own_main(go: str, tool: GoTool, wrapper: Path, env: dict[str, str], label: str) -> None:
    """Put our `main.go` and the module files it embeds into the wrapper's root package."""
    module_dir = _download_module(go, tool, wrapper, env, label)
    for inside_module, wrapper_name in tool.module_files:
        source = module_dir / inside_module
        if not source.is_file():
            raise ToolBuildError(
                f"building {label}: {tool.module}@{tool.version} has no {inside_module} "
                f"(GoTool.module_files of {tool.name})"
            )
        # The module cache is read-only; the copy must be writable so cleanup can remove it.
        (wrapper / wrapper_name).write_bytes(source.read_bytes())
    (wrapper / "main.go").write_text(main_source_text(tool), encoding="utf-8")


def _download_module(go: str, tool: GoTool, wrapper: Path, env: dict[str, str], label: str) -> Path:
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{tool.module}@{tool.version}"],
        cwd=wrapper,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    directory = info.get("Dir") if isinstance(info, dict) else None
    if result.returncode != 0 or not directory:
        detail = (info.get("Error") if isinstance(info, dict) else None) or result.stderr
        raise ToolBuildError(
            f"building {label}: `go mod download {tool.module}@{tool.version}` failed: "
            f"{str(detail).strip()}"
        )
    return Path(directory)


def _build_env(gobin: Path, tool: GoTool | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if tool is not None and tool.goexperiment:
        # Upstream's release build sets these (trivy imports encoding/json/v2, which
        # exists only under GOEXPERIMENT=jsonv2 in Go 1.25-1.26).
        env["GOEXPERIMENT"] = ",".join(tool.goexperiment)
    env.update(
        {
            "GOBIN": str(gobin),
            # -mod=mod lets go fill in go.sum and the requirements the wrapper's go.mod
            # leaves implicit; -trimpath keeps the cache path out of the binary.
            "GOFLAGS": "-mod=mod -trimpath -buildvcs=false",
            "GOWORK": "off",
            # Static binaries, as the upstream release builds are; no C toolchain needed.
            "CGO_ENABLED": "0",
        }
    )
    return env


def _check_pinned_version(
    go: str, tool: GoTool, wrapper: Path, env: dict[str, str], label: str
) -> None:
    """Fail if Go resolved the tool's module to anything but the pin.

    With -mod=mod Go may raise a requirement to satisfy an import (another tool's
    `extra_requires` could, for instance); the cache directory's name promises the pin.
    """
    result = subprocess.run(
        [go, "list", "-m", "-f", "{{.Version}}", tool.module],
        cwd=wrapper,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    resolved = result.stdout.strip()
    if result.returncode != 0 or resolved != tool.version:
        raise ToolBuildError(
            f"building {label}: the wrapper module resolved {tool.module} to "
            f"{resolved or '?'} instead of {tool.version}; {result.stderr.strip()}"
        )


def _run_go_install(
    go: str, tool: GoTool, wrapper: Path, env: dict[str, str], label: str, report: Progress
) -> None:
    command = [go, "install", "-v"]
    if tool.tags:
        command += ["-tags", ",".join(tool.tags)]
    if tool.ldflags:
        command += ["-ldflags", tool.ldflags]
    command.append(tool.install_target)

    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    counts = {"downloaded": 0, "compiled": 0}
    started = time.monotonic()
    finished = threading.Event()

    def heartbeat() -> None:
        # go is quiet for long stretches (linking, big packages); a periodic line tells
        # a CI log reader the build is alive and how far it got.
        while not finished.wait(HEARTBEAT_SECONDS):
            report(
                f"[{label}] {time.monotonic() - started:.0f} s: "
                f"{counts['downloaded']} modules downloaded, "
                f"{counts['compiled']} packages compiled"
            )

    ticker = threading.Thread(target=heartbeat, name=f"build-{tool.name}", daemon=True)
    ticker.start()
    try:
        process = subprocess.Popen(
            command,
            cwd=wrapper,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            tail.append(line)
            if line.startswith("go: downloading"):
                counts["downloaded"] += 1
            elif line and not line.startswith(("go:", "#")):
                counts["compiled"] += 1
        returncode = process.wait()
    except OSError as error:
        raise ToolBuildError(f"building {label}: could not run {go}: {error}") from error
    finally:
        finished.set()
        ticker.join()
    if returncode != 0:
        output = "\n".join(f"    {line}" for line in tail)
        raise ToolBuildError(
            f"building {label} ({tool.package}) failed: `go install` exited with "
            f"{returncode} after {time.monotonic() - started:.0f} s. "
            f"Last lines of go's output:\n{output}"
        )


def wrapper_go_mod(tool: GoTool, go_language_version: str) -> str:
    lines = [
        f"module {wrapper_module_path(tool)}",
        "",
        f"go {go_language_version}",
        "",
        "require (",
        f"\t{tool.module} {tool.version}",
        *(f"\t{module} {version}" for module, version in tool.extra_requires),
        ")",
    ]
    if tool.replaces:
        lines += [
            "",
            "replace (",
            *(f"\t{old} => {new} {version}" for old, new, version in tool.replaces),
            ")",
        ]
    return "\n".join(lines) + "\n"


def recipe_of(tool: GoTool) -> dict[str, Any]:
    # Lists, not tuples, so the value round-trips through JSON and compares equal.
    recipe: dict[str, Any] = {
        "name": tool.name,
        "module": tool.module,
        "package": tool.package,
        "version": tool.version,
        "ldflags": tool.ldflags,
        "extra_requires": [list(pair) for pair in tool.extra_requires],
        "replaces": [list(entry) for entry in tool.replaces],
    }
    # Recorded only when used, so the recipes of tools built before these fields existed
    # (helm's cache on every machine) stay equal and are not rebuilt for nothing.
    if tool.binary != tool.installed_name:
        recipe["binary"] = tool.binary
    if tool.tags:
        recipe["tags"] = list(tool.tags)
    if tool.goexperiment:
        recipe["goexperiment"] = list(tool.goexperiment)
    if tool.main_source:
        # An edit of our main.go must rebuild, though the file name stays the same.
        recipe["main_source"] = {
            "name": tool.main_source,
            "sha256": hashlib.sha256(main_source_text(tool).encode()).hexdigest(),
        }
        recipe["module_files"] = [list(pair) for pair in tool.module_files]
    return recipe


def _go_version(go: str) -> str:
    """`go1.26.8`-style version of the toolchain that will run the build."""
    try:
        result = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise ToolBuildError(f"cannot run `{go} env GOVERSION`: {error}") from error
    return result.stdout.strip()


def _go_language_version(go: str) -> str:
    # The wrapper declares the local toolchain's language version so it never asks Go
    # to switch toolchains by itself; "go1.26.8" -> "1.26.8" (dev builds: "go1.27-devel").
    version = _go_version(go).removeprefix("go").split()[0]
    return version.split("-")[0]


@contextlib.contextmanager
def _exclusive_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `path`; `on_wait` runs once if another holder makes us wait."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
