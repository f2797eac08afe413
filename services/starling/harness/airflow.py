"""A real, local Airflow: api-server, scheduler, dag-processor and triggerer as separate
processes on one SQLite metadata database, running DAGs from a folder with the
LocalExecutor.

This is what the event-driven login DAG needs to be proven end to end: a message on the
topic is picked up by the triggerer's asset watcher, stored as an asset event, turned into
a DAG run by the scheduler and executed by a worker that talks to the api-server's
execution API, with no manual trigger anywhere.

Usage::

    with AirflowStack.start(dags_folder=path, env={"AIRFLOW_CONN_KAFKA_DEFAULT": ...}) as af:
        af.wait_until(lambda: af.dag_runs("login_events"), timeout=120)

Airflow itself is not imported here: the components are the `airflow` CLI of this
environment, and the metadata database is read with `sqlite3`, so the harness works the
same in any process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from starling.harness import _process

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# services/starling/harness/airflow.py -> the repository root (a source checkout).
_REPO_ROOT = Path(__file__).resolve().parents[3]
# The connections the DAGs use (starling_operators.settings), as Airflow reads them from
# the environment.
KAFKA_CONNECTION_ENV = "AIRFLOW_CONN_KAFKA_DEFAULT"
STORE_CONNECTION_ENV = "AIRFLOW_CONN_STARLING_STORE"
# The login DAG's asset watcher consumes in this group (our operators set their own).
LOGIN_WATCHER_GROUP = "starling-airflow-login-watcher"
# What /api/v2/monitor/health reports per component, by our component names.
_HEALTH_KEYS = {
    "scheduler": "scheduler",
    "triggerer": "triggerer",
    "dag-processor": "dag_processor",
}

# The scheduler's and triggerer's log servers listen on every interface and Airflow 3.3
# has no setting to bind them; with every component on this machine the api-server reads
# task logs from the files directly, so they are not started at all.
_COMPONENT_FLAGS = {"scheduler": ("--skip-serve-logs",), "triggerer": ("--skip-serve-logs",)}

T = TypeVar("T")


class AirflowHarnessError(RuntimeError):
    """Airflow is missing, a component did not start, or a wait timed out."""


def airflow_executable() -> str:
    """The `airflow` CLI next to this interpreter (the environment's pinned Airflow)."""
    candidate = Path(sys.executable).with_name("airflow")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("airflow")
    if found is None:
        raise AirflowHarnessError(
            "no `airflow` CLI next to this Python or on PATH; run `uv sync` (group `airflow`)"
        )
    return found


def default_dags_folder() -> Path:
    """`dags/` of the source checkout this package runs from."""
    return _REPO_ROOT / "dags"


def kafka_connection(bootstrap: str, **extra: Any) -> str:
    """The provider's `kafka` connection as Airflow reads it from AIRFLOW_CONN_*: PLAINTEXT,
    unless `extra` (librdkafka settings, added or replacing these) says otherwise."""
    return json.dumps(
        {
            "conn_type": "kafka",
            "extra": {
                "bootstrap.servers": bootstrap,
                "group.id": LOGIN_WATCHER_GROUP,
                # The login watcher's trigger refuses to start otherwise: it commits offsets
                # itself, after the asset event is stored.
                "enable.auto.commit": "false",
                # A new group starts at the oldest login, not only at ones produced later.
                "auto.offset.reset": "earliest",
                **extra,
            },
        }
    )


def connections_env(bootstrap: str, store_url: str, **kafka_extra: Any) -> dict[str, str]:
    """The environment that points the DAGs at a broker (`kafka_extra`: librdkafka
    settings such as SASL credentials) and a store."""
    return {
        KAFKA_CONNECTION_ENV: kafka_connection(bootstrap, **kafka_extra),
        STORE_CONNECTION_ENV: store_url,
    }


_live_stacks: _process.StopAtExit[AirflowStack] = _process.StopAtExit()


class AirflowStack(_process.StopsOnExit):
    """The four Airflow 3 components in a private AIRFLOW_HOME (deleted by `stop()`)."""

    host = "127.0.0.1"

    def __init__(
        self, *, home: Path, dags_folder: Path, env: Mapping[str, str], components: Iterable[str]
    ) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.components = tuple(components)
        unknown = set(self.components) - set(COMPONENTS)
        if unknown:
            raise AirflowHarnessError(f"unknown components {sorted(unknown)}; known: {COMPONENTS}")
        (self.api_port,) = _process.free_ports(1)
        self.environment = self._environment(env)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped = False
        self._keep_home = False

    @classmethod
    def start(
        cls,
        *,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        components: Iterable[str] = COMPONENTS,
        ready_timeout: float = 120.0,
        progress: Callable[[str], None] | None = None,
        home: Path | None = None,
    ) -> AirflowStack:
        """Migrate a fresh metadata database, start the components and wait until the
        api-server reports every one of them healthy. `env` adds to (and wins over) the
        settings made here, e.g. connections as `AIRFLOW_CONN_*`. `progress` is told about
        each step (a migration alone takes tens of seconds).

        With `home`, AIRFLOW_HOME (database, logs) is that directory and `stop()` keeps
        it, so a later stack on the same home resumes its database (the migration is then
        a quick check); by default it is a temporary directory, deleted by `stop()`."""
        report = progress or (lambda line: None)
        keep = home is not None
        if home is None:
            home = Path(tempfile.mkdtemp(prefix="starling-airflow-"))
            _process.reaper.watch_directory(home)
        else:
            home.mkdir(parents=True, exist_ok=True)
        stack = cls(home=home, dags_folder=dags_folder, env=env or {}, components=components)
        stack._keep_home = keep
        _live_stacks.add(stack)
        try:
            started = time.monotonic()
            report(f"[airflow] migrating the SQLite metadata database in {home} ...")
            stack._migrate()
            report(f"[airflow] database ready after {time.monotonic() - started:.0f} s")
            for component in stack.components:
                stack._launch(component)
            report(f"[airflow] started {', '.join(stack.components)}; waiting until healthy ...")
            stack._wait_healthy(ready_timeout, report)
            report(f"[airflow] all healthy after {time.monotonic() - started:.0f} s")
        except BaseException:
            stack.stop()
            raise
        return stack

    # ---- configuration ---------------------------------------------------------------

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def log_file(self, component: str) -> Path:
        return self.home / "components" / f"{component}.log"

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Inherited AIRFLOW__* settings (a developer's, or a test session's) would point
        # the components at another database; only ours apply.
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        base.pop("AIRFLOW_HOME", None)
        # Likewise another config file, which could e.g. change the auth manager.
        base.pop("AIRFLOW_CONFIG", None)
        return {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Workers reach the execution API of *this* api-server, and every component
            # signs and checks task tokens with the same secret.
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # Local and fast: parse new files within seconds, heartbeat every second.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # The health endpoint is read without logging in.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            **extra,
        }

    # ---- lifecycle -------------------------------------------------------------------

    def _migrate(self) -> None:
        started = time.monotonic()
        result = subprocess.run(
            [airflow_executable(), "db", "migrate"],
            env=self.environment,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise AirflowHarnessError(
                f"`airflow db migrate` failed (exit {result.returncode}) after"
                f" {time.monotonic() - started:.0f} s:\n{result.stderr[-4000:]}"
            )

    def _launch(self, component: str) -> None:
        if self._stopped:
            raise AirflowHarnessError("this AirflowStack was stopped for good; start a new one")
        running = self._processes.get(component)
        if running is not None and running.poll() is None:
            raise AirflowHarnessError(f"the {component} is already running")
        self._processes[component] = _process.start_session_process(
            [airflow_executable(), component, *_COMPONENT_FLAGS.get(component, ())],
            cwd=self.home,
            output=self.log_file(component),
            env=self.environment,
        )

    def kill(self, component: str) -> None:
        """SIGKILL one component, as a crash would; `restart(component)` brings it back."""
        process = self._processes.get(component)
        if process is not None:
            _process.kill_process(process)

    def restart(self, component: str, ready_timeout: float = 120.0) -> None:
        process = self._processes.get(component)
        if process is not None:
            _process.stop_process(process, timeout=30.0)
        self._launch(component)
        self._wait_healthy(ready_timeout)

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after 30 s) and delete the home
        (unless `start` was given it)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            # All at once: one after the other, a stop takes the sum of four graceful
            # shutdowns (9.8 s against 5.0 s on a busy 2-core machine; up to 2 minutes
            # when each uses its 30 s grace).
            _process.stop_processes(self._processes.values(), timeout=30.0, warn_on_kill=False)
        finally:
            if not self._keep_home:
                shutil.rmtree(self.home, ignore_errors=True)
                _process.reaper.forget_directory(self.home)
            _live_stacks.discard(self)

    # ---- observation -----------------------------------------------------------------

    def health(self) -> dict[str, Any] | None:
        """The api-server's /api/v2/monitor/health, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=2) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def _unhealthy(self) -> list[str]:
        health = self.health()
        if health is None:
            # Without the api-server nothing can be told about the others either.
            return list(self.components) if "api-server" in self.components else []
        waiting = []
        for component in self.components:
            key = _HEALTH_KEYS.get(component)
            if key is not None and (health.get(key) or {}).get("status") != "healthy":
                waiting.append(component)
        return waiting

    def exited_component(self, lines: int = 40) -> str | None:
        """Which component has exited and the end of its log, or None while all run."""
        for component, process in self._processes.items():
            code = process.poll()
            if code is not None:
                return (
                    f"the {component} exited with code {code}\n"
                    f"--- {self.log_file(component)} ---\n{self.log_tail(component, lines)}"
                )
        return None

    def _wait_healthy(self, timeout: float, report: Callable[[str], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        pending = set(self.components)
        while True:
            problem = self.exited_component()
            if problem:
                raise AirflowHarnessError(problem)
            waiting = self._unhealthy()
            if report is not None:
                for component in sorted(pending - set(waiting)):
                    report(
                        f"[airflow] {component} healthy,"
                        f" {time.monotonic() - started:.0f} s after launch"
                    )
            pending = set(waiting)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                tails = "\n".join(
                    f"--- {self.log_file(c)} ---\n{self.log_tail(c)}" for c in waiting
                )
                raise AirflowHarnessError(
                    f"not healthy within {timeout:.0f} s: {', '.join(waiting)}\n{tails}"
                )
            time.sleep(0.5)

    def log_tail(self, component: str, lines: int = 40) -> str:
        return _process.tail(self.log_file(component), lines)

    def query(self, sql: str, parameters: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query on the metadata database (a short read transaction;
        SQLite lets the components keep writing around it)."""
        uri = f"file:{self.database}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=10) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql, tuple(parameters))]

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT id, run_id, run_type, state, conf FROM dag_run WHERE dag_id = ? ORDER BY id",
            [dag_id],
        )

    def wait_until(self, probe: Callable[[], T], timeout: float, what: str = "condition") -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` and showing
        the components' logs (the first place to look) when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() >= deadline:
                tails = "\n".join(
                    f"--- {self.log_file(c)} ---\n{self.log_tail(c, 15)}" for c in self.components
                )
                raise AirflowHarnessError(f"{what}: not reached within {timeout:.0f} s\n{tails}")
            time.sleep(0.5)
