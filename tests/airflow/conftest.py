"""Airflow for tests: one throw-away AIRFLOW_HOME with a SQLite metadata DB per session.

The environment is set when this conftest is imported, i.e. before any test module here
imports Airflow (Airflow reads its configuration at import). Nothing outside
`tests/airflow/` imports Airflow, so the rest of the suite does not pay for it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from starling.harness.airflow import kafka_connection

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"

_HOME = Path(tempfile.mkdtemp(prefix="starling-airflow-home-"))
# Deleted when the session's interpreter exits (it holds the SQLite DB and task logs).
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Never reach out for anything while testing.
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": "(airflow|starling).*",
    }
)

MIGRATE_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per session (measured: see docs/airflow.md)."""
    started = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    MIGRATE_SECONDS["db migrate"] = time.monotonic() - started
    return _HOME


@pytest.fixture
def starling_env(
    monkeypatch: pytest.MonkeyPatch,
    kafka: KafkaCluster,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    airflow_db: Path,
) -> Iterator[dict[str, str]]:
    """Connections to the session's broker and store, and a topic/store prefix unique to
    the test, with every catalog topic created under that prefix."""
    from starling.topics import CATALOG
    from starling_operators import kafka as kafka_helpers

    prefix = f"af{uuid.uuid4().hex[:8]}."
    bootstrap = kafka.bootstrap_servers
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", kafka_connection(bootstrap))
    monkeypatch.setenv("AIRFLOW_CONN_STARLING_STORE", redis_server.url)
    monkeypatch.setenv("STARLING_TOPIC_PREFIX", prefix)
    kafka_helpers.ensure_topics(
        {"bootstrap.servers": bootstrap},
        [
            # Test traffic is timestamped in the past (simulated time): keep it forever,
            # or the broker's retention deletes it while the test runs.
            kafka_helpers.TopicRequest(
                prefix + spec.name, spec.partitions, 1, {"retention.ms": "-1"}
            )
            for spec in CATALOG.for_cluster(1).all_topics()
        ],
    )
    _wait_for_leaders(bootstrap, prefix)
    yield {"prefix": prefix, "bootstrap": bootstrap}


def _wait_for_leaders(bootstrap: str, prefix: str, timeout: float = 15.0) -> None:
    """CreateTopics returns before every broker's metadata cache knows the new partitions'
    leaders; a test that produces at once would be told "unknown topic"."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=5).topics
        ours = {name: t for name, t in topics.items() if name.startswith(prefix)}
        ready = ours and all(
            t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values())
            for t in ours.values()
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics with prefix {prefix} have no leaders after {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_namespace(file_name: str) -> dict[str, Any]:
    import runpy

    return runpy.run_path(str(DAGS / file_name), run_name=f"dag_{uuid.uuid4().hex}")


def load_dag(file_name: str, retries: int = 0) -> Any:
    """Import a DAG file fresh (module-level settings such as the watcher's topic are read
    from the environment at parse time). Retries are off by default: `dag.test()` would
    otherwise sit out each retry delay before reporting a failure."""
    from airflow.sdk import DAG

    namespace = load_namespace(file_name)
    dags = [value for value in namespace.values() if isinstance(value, DAG)]
    assert len(dags) == 1, f"{file_name} defines {len(dags)} DAGs"
    for task in dags[0].tasks:
        task.retries = retries
    return dags[0]


DagLoader = Callable[[str], Any]
