"""`starling up` with everything, Airflow included, as a real process: every component in
the table healthy, Airflow's components and DAGs seen by `starling status`, and
`starling down` from another process leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from starling.harness.stack import STATE_FILE, pid_alive
from tests.integration.test_up import starling, status, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Airflow's four components take most of this on a shared 2-core machine.
UP_WITH_AIRFLOW_TIMEOUT_S = 420.0


def test_up_with_airflow_then_down_from_another_terminal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    output = tmp_path / "up.out"
    argv = starling("up", "--data-dir", str(data_dir), "--users", "50")
    argv += ["--gateway-port", "0", "--identity-port", "0"]
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    pids: list[int] = []
    try:
        started = time.monotonic()
        # Not "all healthy after": Airflow's own progress line says that too.
        printed = wait_for(output, "stops everything.", process, UP_WITH_AIRFLOW_TIMEOUT_S)
        print(f"\nstarling up (with Airflow) to all-healthy: {time.monotonic() - started:.1f} s")
        table = printed.split("starling up", 1)[1]
        assert "│ airflow" in table, table
        assert "UNHEALTHY" not in table, table
        state = json.loads((data_dir / STATE_FILE).read_text())
        pids = [pid for component in state["components"] for pid in component["pids"]]
        assert pids and all(pid_alive(pid) for pid in pids)

        report = status(data_dir)
        assert report.returncode == 0, report.stdout + report.stderr

        # The generator's sign-ins reach the login DAG through the asset watcher (Airflow
        # on the SCRAM listener as the `airflow` principal, held to its ACLs), and its run
        # succeeds: it read the logins and wrote notifications and recommendations.
        def login_runs_succeeded(table: str) -> bool:
            return any("login_events" in line and "success" in line for line in table.splitlines())

        deadline = time.monotonic() + 180
        while not login_runs_succeeded(report.stdout) and time.monotonic() < deadline:
            time.sleep(5)
            report = status(data_dir)
        assert login_runs_succeeded(report.stdout), report.stdout
        print(f"first login_events run seen {time.monotonic() - started:.1f} s after start")
    finally:
        stopped = time.monotonic()
        down = subprocess.run(
            starling("down", "--data-dir", str(data_dir)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        code = process.wait(timeout=60)
    print(f"starling down: {time.monotonic() - stopped:.1f} s")
    assert down.returncode == 0, down.stdout + down.stderr
    assert code == 0, output.read_text()
    assert not [pid for pid in pids if pid_alive(pid)], "processes left after starling down"
