"""`starling dev airflow` as a user runs it: a real process bringing up the four Airflow
components with the repository's DAGs against the session broker and store, the UI on
loopback only and open without a login, and a clean stop on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from starling.harness.kafka import KafkaCluster
from starling.harness.redis import RedisServer
from tests.airflow.conftest import DAGS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

READY_TIMEOUT_S = 360.0
STOP_TIMEOUT_S = 60.0


def get_json(url: str) -> Any:
    # No credentials anywhere: the command promises a UI and API without a login.
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def lines_of(stream: IO[str]) -> queue.Queue[str | None]:
    """The process's output line by line, read on a thread so a silent process cannot
    block the test past its deadlines (None marks the end of the output)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(
    lines: queue.Queue[str | None], pattern: str, timeout: float, seen: list[str]
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{''.join(seen)}")


def dag_file_locations(api_url: str) -> set[str]:
    return {d["fileloc"] for d in get_json(f"{api_url}/api/v2/dags?limit=100")["dags"]}


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_dev_airflow_runs_healthy_with_the_repo_dags_and_stops_cleanly_on_ctrl_c(
    kafka: KafkaCluster, redis_server: RedisServer
) -> None:
    # Topics and store keys of their own: the hourly DAGs run at once on the session's
    # broker and store, which other tests share.
    prefix = f"devaf{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "STARLING_TOPIC_PREFIX": prefix, "STARLING_STORE_PREFIX": prefix}
    command = [sys.executable, "-m", "starling.cli", "dev", "airflow"]
    command += ["--bootstrap", kafka.bootstrap_servers, "--redis", redis_server.url]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        lines = lines_of(process.stdout)
        read_until(lines, r"Airflow \S+ is ready", READY_TIMEOUT_S, seen)
        api_url = read_until(lines, r"UI and REST API: (\S+)", 5, seen)[1]
        home = Path(read_until(lines, r"^\s+home:\s+(\S+)", 5, seen)[1])
        api_log = Path(read_until(lines, r"^\s+api-server\s+(\S+)", 5, seen)[1])
        read_until(lines, r"Ctrl-C to stop", 5, seen)
        print(f"ready in {time.monotonic() - started:.1f} s")
        output = "".join(seen)
        assert f"topic prefix:    {prefix}" in output
        assert "no login" in output
        assert api_log.is_file()
        assert home.is_dir()

        health = get_json(f"{api_url}/api/v2/monitor/health")
        assert {name: part["status"] for name, part in health.items()} == {
            "metadatabase": "healthy",
            "scheduler": "healthy",
            "triggerer": "healthy",
            "dag_processor": "healthy",
        }
        port = int(api_url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"127.0.0.1"}

        # The repository's DAGs, every file parsed by the dag-processor and listed to an
        # anonymous client (the simple auth manager makes everyone an admin).
        dag_files = {str(p) for p in DAGS.glob("*.py")}
        deadline = time.monotonic() + 120
        while (parsed := dag_file_locations(api_url)) != dag_files:
            assert time.monotonic() < deadline, f"parsed {parsed}, expected {dag_files}"
            time.sleep(1)
        assert get_json(f"{api_url}/api/v2/importErrors")["total_entries"] == 0

        stopping = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, "".join(seen)
        print(f"stopped in {time.monotonic() - stopping:.1f} s")
        assert not home.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
