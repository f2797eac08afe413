"""`starling loadgen` argument handling and file output, through the real dispatcher."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from starling.events import decode
from starling.loadgen.cli import PASSWORD_ENV, register
from starling.loadgen.sink import read_events_file

pytestmark = pytest.mark.unit


def run(argv: list[str]) -> int:
    # The loadgen subcommand alone: the top-level dispatcher also imports modules other
    # people own, which these tests should not depend on.
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loadgen", *argv])
    result: int = args.handler(args)
    return result


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "5"], "exactly one of --bootstrap-servers or --output"),
        (["--output", "x", "--bootstrap-servers", "b:1"], "exactly one of"),
        (["--output", "x", "--count", "0"], "argument --count: must be >= 1"),
        (["--output", "x", "--count", "many"], "argument --count: 'many' is not an integer"),
        (["--output", "x", "--rate", "-1"], "argument --rate: must be >= 0"),
        (["--output", "x", "--duration", "0"], "argument --duration: must be > 0"),
        (["--output", "x", "--count", "1", "--duration", "1"], "not allowed with argument"),
        (["--output", "x", "--users", "1"], "argument --users: must be >= 2"),
        (["--output", "x", "--burst", "tag:1:2"], "argument --burst: burst 'tag:1:2' is not"),
        (["--output", "x", "--burst", "tag:1:2:0.5"], "multiplier must be >= 1"),
        (["--output", "x", "--epoch", "yesterday"], "argument --epoch: 'yesterday' is not"),
        (["--output", "x", "--epoch", "1999-01-01"], "TrafficConfig.epoch"),
        (["--output", "x", "--mix", "1:2"], "argument --mix"),
        (["--bootstrap-servers", "b:1", "--sasl-username", "u"], f"${PASSWORD_ENV}"),
        (
            ["--bootstrap-servers", "b:1", "--security-protocol", "sasl_ssl"],
            "needs --sasl-username",
        ),
        (
            [
                "--bootstrap-servers",
                "b:1",
                "--security-protocol",
                "PLAINTEXT",
                "--sasl-username",
                "u",
            ],
            "need a SASL --security-protocol",
        ),
        (
            ["--bootstrap-servers", "b:1", "--ssl-ca-location", "/no/such/ca.pem"],
            "--ssl-ca-location: no such file",
        ),
        (
            ["--bootstrap-servers", "b:1", "--security-protocol", "tls"],
            "argument --security-protocol",
        ),
    ],
)
def test_bad_arguments_name_the_option(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert message in error_of(argv, capsys)


def test_file_output_is_reproducible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--count", "3000", "--rate", "0", "--seed", "9", "--users", "300"]
    common += ["--epoch", "2026-03-01T12:00:00Z", "--burst", "eclipse:1:1:30", "--quiet"]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run([*common, "--output", str(first)]) == 0
    assert run([*common, "--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    records = list(read_events_file(first))
    assert len(records) == 3000
    assert str(decode(records[0][2]).event_time) == "2026-03-01 12:00:00+00:00"
    report = capsys.readouterr().err
    assert "sent 3,000, delivered 3,000, failed 0" in report


def test_unreachable_broker_fails_fast_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 1 on localhost refuses connections; the check gives up after --connect-timeout.
    argv = ["--bootstrap-servers", "127.0.0.1:1", "--count", "1", "--connect-timeout", "1"]
    code = run([*argv, "--quiet"])
    assert code == 2
    assert "cannot reach Kafka within" in capsys.readouterr().err
