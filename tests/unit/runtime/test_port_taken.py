"""A port another process holds is a configuration error: `starling run <svc>` exits with
the configuration-error code (2) and one line naming the variable, not a traceback and
exit 1 (metrics port of a stream service) or uvicorn's startup-failure exit 3 (the
gateway's HTTP port). Runs the real CLI as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from starling.run_cli import EXIT_CONFIG

pytestmark = pytest.mark.unit

STARLING = str(Path(sys.executable).parent / "starling")


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", 0))
    holder.listen()
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def run(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STARLING_", "KAFKA_", "STORE_", "METRICS_", "HTTP_"))
    }
    # Nothing listens there: the port check must come before any client would connect.
    environment.update(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", STORE_PORT="1", **env)
    return subprocess.run(
        [STARLING, "run", service],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("service", ["trends", "ingestion"])
def test_a_second_service_on_a_taken_metrics_port_exits_with_one_line(
    taken_port: int, service: str
) -> None:
    finished = run(service, METRICS_PORT=str(taken_port))
    assert finished.returncode == EXIT_CONFIG, finished.stderr
    lines = error_lines(finished.stderr)
    assert len(lines) == 1, finished.stderr
    assert f"METRICS_PORT={taken_port}" in lines[0]
    assert "Traceback" not in finished.stderr


def test_a_gateway_whose_http_port_is_taken_exits_with_one_line(taken_port: int) -> None:
    finished = run(
        "gateway",
        HTTP_PORT=str(taken_port),
        METRICS_PORT="0",
        STARLING_GATEWAY_AUTH="header",
        STARLING_GATEWAY_TRUSTED_PROXIES="127.0.0.1/32",
    )
    assert finished.returncode == EXIT_CONFIG, finished.stderr
    lines = error_lines(finished.stderr)
    assert len(lines) == 1, finished.stderr
    assert f"HTTP_PORT={taken_port}" in lines[0]
