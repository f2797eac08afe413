"""`starling dev airflow` argument handling, connection environment and summary, with the
Airflow stack replaced by a stand-in (nothing is started here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from starling.harness import airflow as airflow_harness
from starling.harness.cli import register

pytestmark = pytest.mark.unit

BOOTSTRAP = "127.0.0.1:9092"
REDIS = "redis://127.0.0.1:6379/0"


def parse(argv: list[str]) -> argparse.Namespace:
    # The dev group alone: the top-level dispatcher also imports modules other people own.
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["dev", "airflow", *argv])


def run(argv: list[str]) -> int:
    args = parse(argv)
    result: int = args.handler(args)
    return result


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_options_parse_and_dags_default_to_the_checkout() -> None:
    args = parse(["--bootstrap", "b1:9092,b2:9093", "--redis", REDIS])
    assert (args.bootstrap, args.redis, args.dags) == ("b1:9092,b2:9093", REDIS, None)
    # loadgen's spelling works too
    assert parse(["--bootstrap-servers", BOOTSTRAP, "--redis", REDIS]).bootstrap == BOOTSTRAP
    assert parse(["--bootstrap", BOOTSTRAP, "--redis", REDIS, "--dags", "x"]).dags == Path("x")
    assert airflow_harness.default_dags_folder() == Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--redis", REDIS], "the following arguments are required: --bootstrap"),
        (["--bootstrap", BOOTSTRAP], "the following arguments are required: --redis"),
        (["--bootstrap", "localhost", "--redis", REDIS], "'localhost' is not HOST:PORT"),
        (["--bootstrap", "h:0", "--redis", REDIS], "'h:0' is not HOST:PORT"),
        (["--bootstrap", "h:1,h", "--redis", REDIS], "'h:1,h' is not HOST:PORT"),
        (["--bootstrap", BOOTSTRAP, "--redis", "127.0.0.1:6379"], "is not a URL like redis://"),
        (["--bootstrap", BOOTSTRAP, "--redis", "rediss://h:6380/0"], "is not a URL like redis"),
        (["--bootstrap", BOOTSTRAP, "--redis", "redis://h:99999"], "is not a URL like redis"),
        (["--bootstrap", BOOTSTRAP, "--redis", "redis://h:1/db"], "is not a URL like redis"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in error_of(argv, capsys)


def test_connections_env_is_what_the_login_watcher_and_store_client_need() -> None:
    env = airflow_harness.connections_env(BOOTSTRAP, "redis://:pw@127.0.0.1:6379/2")
    assert set(env) == {"AIRFLOW_CONN_KAFKA_DEFAULT", "AIRFLOW_CONN_STARLING_STORE"}
    assert json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"]) == {
        "conn_type": "kafka",
        "extra": {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": "starling-airflow-login-watcher",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
        },
    }
    assert env["AIRFLOW_CONN_STARLING_STORE"] == "redis://:pw@127.0.0.1:6379/2"


class StandInStack:
    """What the command uses of AirflowStack; reports a dead scheduler at once so the
    command returns instead of waiting for Ctrl-C."""

    host = "127.0.0.1"
    api_url = "http://127.0.0.1:8793"
    components = airflow_harness.COMPONENTS
    started_with: ClassVar[dict[str, Any]] = {}
    stopped = False

    def __init__(self, home: Path, dags_folder: Path) -> None:
        self.home = home
        self.dags_folder = dags_folder

    @classmethod
    def start(cls, *, dags_folder: Path, **kwargs: Any) -> StandInStack:
        cls.started_with = {"dags_folder": dags_folder, **kwargs}
        kwargs["progress"]("[airflow] a progress line")
        return cls(Path("/tmp/starling-airflow-standin"), dags_folder)

    def log_file(self, component: str) -> Path:
        return self.home / "components" / f"{component}.log"

    def exited_component(self) -> str | None:
        return "the scheduler exited with code 1"

    def __enter__(self) -> StandInStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        type(self).stopped = True


def test_the_command_starts_the_stack_with_the_connections_and_prints_what_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(airflow_harness, "AirflowStack", StandInStack)
    monkeypatch.setattr(StandInStack, "stopped", False)
    monkeypatch.setenv("STARLING_TOPIC_PREFIX", "dev1.")
    store = "redis://:secret@127.0.0.1:6379/0"

    # A component that dies is a failure (exit 1), reported with the summary first.
    assert run(["--bootstrap", BOOTSTRAP, "--redis", store, "--dags", str(tmp_path)]) == 1

    started = StandInStack.started_with
    assert started["dags_folder"] == tmp_path.resolve()
    assert started["env"] == airflow_harness.connections_env(BOOTSTRAP, store)
    assert StandInStack.stopped
    out = capsys.readouterr().out
    assert "[airflow] a progress line" in out
    assert "UI and REST API: http://127.0.0.1:8793  (listens on 127.0.0.1 only)" in out
    assert "no login" in out
    assert "topic prefix:    dev1." in out
    for component in airflow_harness.COMPONENTS:
        assert f"/tmp/starling-airflow-standin/components/{component}.log" in out
    assert "secret" not in out, "the store password is not printed"
    assert "redis://:***@127.0.0.1:6379/0" in out
    assert "the scheduler exited with code 1" in out
    assert out.rstrip().endswith("stopping Airflow ...")


def test_a_missing_dags_folder_is_reported_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(airflow_harness, "AirflowStack", StandInStack)
    monkeypatch.setattr(StandInStack, "started_with", {})
    missing = tmp_path / "nope"
    assert run(["--bootstrap", BOOTSTRAP, "--redis", REDIS, "--dags", str(missing)]) == 2
    assert f"no DAGs folder at {missing}" in capsys.readouterr().err
    assert StandInStack.started_with == {}


def test_a_stack_that_does_not_start_is_an_error_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def fail(**kwargs: Any) -> None:
        raise airflow_harness.AirflowHarnessError("the scheduler exited with code 1")

    monkeypatch.setattr(airflow_harness.AirflowStack, "start", fail)
    assert run(["--bootstrap", BOOTSTRAP, "--redis", REDIS, "--dags", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("starling dev airflow: the scheduler exited with code 1")
