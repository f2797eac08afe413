"""`starling up`'s one-line refusals: a port already taken, a data directory of another
layout or not ours, Java missing, a component that dies at start (nothing is started)."""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from starling.harness import stack
from starling.harness.stack_cli import register

pytestmark = pytest.mark.unit


def run_up(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["up", *argv])
    return int(args.handler(args))


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_a_taken_gateway_port_is_named_with_the_fix(
    tmp_path: Path, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_up(["--data-dir", str(tmp_path / "d"), "--gateway-port", str(taken_port)])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert f"port {taken_port}" in line and "already taken" in line
    assert "--gateway-port" in line
    # Refused before anything was created.
    assert not (tmp_path / "d").exists()


def test_a_data_dir_of_an_older_layout_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / stack.MARKER_FILE).write_text(json.dumps({"layout": 0}))
    code = run_up(["--data-dir", str(tmp_path), "--gateway-port", "0", "--identity-port", "0"])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert "layout 0" in line and "--fresh" in line


def test_a_foreign_non_empty_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code = run_up(["--data-dir", str(tmp_path), "--gateway-port", "0", "--identity-port", "0"])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert "not a Starling data directory" in line and "--fresh" in line
    assert (tmp_path / "notes.txt").exists()


def test_fresh_wipes_and_marks_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / stack.MARKER_FILE).write_text(json.dumps({"layout": 0}))
    (tmp_path / "old").write_text("x")
    stack.prepare_data_dir(tmp_path, fresh=True)
    assert not (tmp_path / "old").exists()
    assert json.loads((tmp_path / stack.MARKER_FILE).read_text()) == {
        "layout": stack.LAYOUT_VERSION
    }
    stack.check_layout(tmp_path)  # accepted now


def test_the_seed_is_generated_once_and_private(tmp_path: Path) -> None:
    seed = stack.ensure_seed(tmp_path)
    first = seed.read_text()
    assert stack.ensure_seed(tmp_path).read_text() == first
    assert os.stat(seed).st_mode & 0o777 == 0o600


def test_missing_java_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    ports = ["--gateway-port", "0", "--identity-port", "0"]
    code = run_up(["--data-dir", str(tmp_path / "d"), "--no-airflow", *ports])
    errors = capsys.readouterr().err
    assert code == 1
    assert "no `java` on PATH" in one_line(errors) and "apt-get install" in errors


def test_a_crash_report_names_the_component_and_shows_its_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("starting\nSTARLING_GATEWAY_ISSUER must be an http(s) URL\n")
    report = stack.crash_report("gateway", 2, log)
    assert report.splitlines()[0].startswith("gateway exited with code 2; see")
    assert "STARLING_GATEWAY_ISSUER must be" in report


def test_kafka_passwords_are_generated_once_per_principal_and_private(tmp_path: Path) -> None:
    from starling.access import PRINCIPALS

    first = stack.ensure_kafka_passwords(tmp_path)
    assert set(first) == {p.name for p in PRINCIPALS}
    assert len(set(first.values())) == len(first)
    assert os.stat(tmp_path / stack.KAFKA_USERS_FILE).st_mode & 0o777 == 0o600
    assert stack.ensure_kafka_passwords(tmp_path) == first


def test_a_damaged_kafka_passwords_file_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    (tmp_path / stack.KAFKA_USERS_FILE).write_text("not json")
    with pytest.raises(stack.StackError, match=r"delete it .* or pass --fresh"):
        stack.ensure_kafka_passwords(tmp_path)
