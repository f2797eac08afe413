"""`starling up` when a component dies while the stack runs: the component is named with
the tail of its log, the rest are stopped cleanly, and no process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from starling.harness.stack import STATE_FILE, pid_alive
from tests.integration.test_up import UP_TIMEOUT_S, starling, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_component_killed_while_running_is_reported_and_the_rest_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    output = tmp_path / "up.out"
    argv = starling("up", "--no-airflow", "--data-dir", str(data_dir), "--users", "50")
    argv += ["--gateway-port", "0", "--identity-port", "0"]
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(output, "all healthy after", process, UP_TIMEOUT_S)
        state = json.loads((data_dir / STATE_FILE).read_text())
        pids = {c["name"]: c["pids"] for c in state["components"]}
        victim = pids["trends"][0]
        os.kill(victim, signal.SIGKILL)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    printed = output.read_text(errors="replace")
    assert code != 0, printed
    # Named, with where its log is; not a generic failure.
    assert "trends exited" in printed, printed
    assert str(data_dir / "logs" / "trends.log") in printed, printed
    deadline = time.monotonic() + 10
    everyone = [pid for group in pids.values() for pid in group]
    while any(pid_alive(pid) for pid in everyone) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in everyone if pid_alive(pid)], "processes left after the crash"
    assert not (data_dir / STATE_FILE).exists()
