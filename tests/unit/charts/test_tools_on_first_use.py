"""The Go tools are built on first use, not by `make setup`: the `go_tool` fixture hands out
cached binaries, and a second requester of a tool being built waits on its lock file, says
so, and reuses the result instead of building it twice."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from starling.toolchain import ensure_tool, tool_dir, tool_named

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[3]


def test_go_tool_hands_out_the_pinned_helm(go_tool: Callable[[str], Path], helm: Path) -> None:
    binary = go_tool("helm")
    assert binary == helm == tool_dir("helm") / "bin" / "helm"
    version = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.startswith(tool_named("helm").version)


def test_a_second_requester_waits_for_the_build_and_reuses_it(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARLING_CACHE", str(tmp_path))
    finished_home = tool_dir("helm")  # now under tmp_path, still empty
    lock = tmp_path / "tools" / f".{tool_named('helm').versioned_name}.lock"
    lock.parent.mkdir(parents=True)
    holding = threading.Event()

    def other_builder() -> None:
        # Stands in for another session's build: holds the tool's lock (a separate open
        # file, so flock excludes us as it would another process), then "finishes" by
        # putting a complete cache directory in place, as a real build's rename does.
        with lock.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            holding.set()
            time.sleep(1.0)
            shutil.copytree(helm.parent.parent, finished_home, copy_function=os.link)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    builder = threading.Thread(target=other_builder)
    builder.start()
    assert holding.wait(10)
    progress: list[str] = []
    try:
        binary = ensure_tool("helm", progress=progress.append)
    finally:
        builder.join()

    assert binary == finished_home / "bin" / "helm"
    assert len(progress) == 1, progress  # the wait, and no build of our own
    assert "another process is building it" in progress[0]
    assert str(lock) in progress[0]


def test_setup_builds_no_go_tool_and_ci_builds_them_before_the_tests() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "tools build" not in setup
    ci = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip().startswith("make ")
    ]
    assert ci == ["make tools", "make test"]
