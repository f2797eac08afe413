"""`starling dev ...`: run real Kafka / Redis / Airflow locally, or pre-fetch the Kafka jars.

Only argparse is imported here; the harness modules (and confluent-kafka, cryptography)
load when a `dev` command actually runs, so `starling --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

# A busy 2-core machine can take minutes to bring four Airflow processes up; a developer
# would rather wait than retry.
AIRFLOW_READY_TIMEOUT_S = 300.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="run real Kafka/Redis/Airflow locally for development and tests",
        description="Run a real Kafka cluster, Redis server or Airflow locally (until "
        "Ctrl-C), or fetch and cache the Kafka broker jars.",
    )
    dev_commands = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")

    kafka = dev_commands.add_parser(
        "kafka",
        help="run a local KRaft Kafka (PLAINTEXT + SASL_SSL/SCRAM-SHA-512) until Ctrl-C",
    )
    kafka.add_argument(
        "--nodes",
        type=int,
        choices=(1, 3),
        default=1,
        help="1 node, or 3 for a quorum that survives losing one (default: 1)",
    )
    kafka.add_argument(
        "--authorizer",
        action="store_true",
        help="enable the StandardAuthorizer (super users: ANONYMOUS on PLAINTEXT, admin)",
    )
    kafka.add_argument(
        "--no-topics",
        dest="create_topics",
        action="store_false",
        help="do not create the catalog's topics (by default all of them, DLQs included, "
        "with replication capped to the cluster)",
    )
    kafka.set_defaults(handler=_run_kafka)

    redis = dev_commands.add_parser("redis", help="run a local redis-server until Ctrl-C")
    redis.add_argument("--appendonly", action="store_true", help="persist with an AOF")
    redis.set_defaults(handler=_run_redis)

    airflow = dev_commands.add_parser(
        "airflow",
        help="run Airflow (api-server, scheduler, dag-processor, triggerer) with the "
        "repository's DAGs until Ctrl-C",
        description="Run the real Airflow of this environment on a throw-away SQLite "
        "database with the LocalExecutor, its DAGs connected to the given Kafka and store. "
        "The UI listens on 127.0.0.1 only and needs no login. The DAGs see this shell's "
        "environment (e.g. STARLING_TOPIC_PREFIX) except its AIRFLOW__* settings.",
    )
    airflow.add_argument(
        "--bootstrap",
        "--bootstrap-servers",
        dest="bootstrap",
        required=True,
        type=_bootstrap_servers,
        metavar="HOST:PORT[,...]",
        help="Kafka (PLAINTEXT) for the kafka_default connection, e.g. the PLAINTEXT "
        "bootstrap `starling dev kafka` prints",
    )
    airflow.add_argument(
        "--redis",
        required=True,
        type=_redis_url,
        metavar="URL",
        help="the store for the starling_store connection: redis://[:PASSWORD@]HOST:PORT[/DB], "
        "e.g. the URL `starling dev redis` prints",
    )
    airflow.add_argument(
        "--dags",
        type=Path,
        metavar="PATH",
        help="folder of DAG files (default: dags/ of this checkout)",
    )
    airflow.set_defaults(handler=_run_airflow)

    fetch = dev_commands.add_parser(
        "fetch",
        help="fetch and cache the Kafka broker jars (and the JVM class-data archive)",
    )
    fetch.add_argument(
        "--jars-only", action="store_true", help="skip recording the class-data archive"
    )
    fetch.set_defaults(handler=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    from starling.harness.kafka import prepare_kafka
    from starling.harness.kafka_dist import ensure_kafka

    distribution = ensure_kafka() if args.jars_only else prepare_kafka()
    print(f"Kafka {distribution.version} jars cached in {distribution.libs}")
    return 0


def _run_kafka(args: argparse.Namespace) -> int:
    from starling.harness.kafka import KafkaCluster

    print(f"starting a {args.nodes}-node Kafka cluster ...", flush=True)
    with KafkaCluster.start(nodes=args.nodes, authorizer=args.authorizer) as cluster:
        if args.create_topics:
            _create_catalog_topics(cluster, args.nodes)
        sasl = cluster.client_config("sasl_ssl")
        print(
            f"\nKafka {cluster.version} is ready ({args.nodes} node(s), "
            f"authorizer {'on' if args.authorizer else 'off'}; data in {cluster.directory})\n"
            f"  PLAINTEXT bootstrap: {cluster.bootstrap_servers}\n"
            f"  SASL_SSL bootstrap:  {cluster.sasl_ssl_bootstrap_servers}"
            f"  (SCRAM-SHA-512, CA {cluster.ca_location})\n"
            f"\nconfluent-kafka settings, PLAINTEXT:\n{_indented_json(cluster.client_config())}\n"
            f"confluent-kafka settings, SASL_SSL as {cluster.admin_user}:\n{_indented_json(sasl)}\n"
            f"\nlogs: {cluster.directory}/node-*/logs/server.log\n"
            "Ctrl-C to stop (the cluster and its data are deleted).",
            flush=True,
        )
        problem = _wait_for_stop_signal(lambda: _first_dead_node(cluster))
        print("stopping Kafka ...", flush=True)
    return 1 if problem else 0


def _run_redis(args: argparse.Namespace) -> int:
    from starling.harness.redis import RedisServer

    with RedisServer.start(appendonly=args.appendonly) as server:
        print(
            f"redis-server ready: {server.url}  (data in {server.directory})\n"
            "Ctrl-C to stop (its data is deleted).",
            flush=True,
        )
        problem = _wait_for_stop_signal(
            lambda: None if server.is_running else f"redis-server exited; see {server.log_file}"
        )
        print("stopping redis-server ...", flush=True)
    return 1 if problem else 0


def _bootstrap_servers(text: str) -> str:
    """An argparse type: librdkafka's bootstrap.servers, HOST:PORT[,HOST:PORT...]."""
    for server in text.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT[,HOST:PORT...]")
    return text


def _redis_url(text: str) -> str:
    """An argparse type: a plain redis:// URL. The DAGs' store client takes host, port,
    password and database from the connection and TLS only from its extra, so a rediss://
    URL would silently connect without TLS: refused here."""
    parsed = urllib.parse.urlsplit(text)
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:
        port_ok = False
    database = parsed.path.lstrip("/")
    if (
        parsed.scheme != "redis"
        or not parsed.hostname
        or not port_ok
        or not (database == "" or database.isdigit())
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a URL like redis://[:PASSWORD@]HOST:PORT[/DB]"
        )
    return text


def _run_airflow(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from starling.harness.airflow import (
        AirflowHarnessError,
        AirflowStack,
        connections_env,
        default_dags_folder,
    )

    dags = (args.dags or default_dags_folder()).resolve()
    if not dags.is_dir():
        print(f"starling dev airflow: no DAGs folder at {dags}; pass --dags PATH", file=sys.stderr)
        return 2
    try:
        airflow_version = version("apache-airflow")
    except PackageNotFoundError:
        print(
            "starling dev airflow: Airflow is not installed here; run `uv sync` (group `airflow`)",
            file=sys.stderr,
        )
        return 1

    print(f"starting Airflow {airflow_version} with the DAGs in {dags} ...", flush=True)
    try:
        stack = AirflowStack.start(
            dags_folder=dags,
            env=connections_env(args.bootstrap, args.redis),
            ready_timeout=AIRFLOW_READY_TIMEOUT_S,
            progress=lambda line: print(line, flush=True),
        )
    except AirflowHarnessError as error:
        print(f"starling dev airflow: {error}", file=sys.stderr)
        return 1
    with stack:
        print(_airflow_summary(stack, airflow_version, args), flush=True)
        problem = _wait_for_stop_signal(stack.exited_component)
        print("stopping Airflow ...", flush=True)
    return 1 if problem else 0


def _airflow_summary(stack: Any, airflow_version: str, args: argparse.Namespace) -> str:
    from starling.harness.airflow import LOGIN_WATCHER_GROUP

    prefix = os.environ.get("STARLING_TOPIC_PREFIX")
    logs = "\n".join(f"  {c:<14} {stack.log_file(c)}" for c in stack.components)
    return (
        f"\nAirflow {airflow_version} is ready: {', '.join(stack.components)}"
        " (LocalExecutor, SQLite)\n"
        f"  UI and REST API: {stack.api_url}  (listens on {stack.host} only)\n"
        "  no login: the simple auth manager makes every visitor an admin\n"
        f"  DAGs:            {stack.dags_folder}  (new DAGs start unpaused)\n"
        f"  kafka_default:   bootstrap.servers={args.bootstrap},"
        f" group.id={LOGIN_WATCHER_GROUP}\n"
        f"  starling_store:  {_without_password(args.redis)}\n"
        + (f"  topic prefix:    {prefix}  (from $STARLING_TOPIC_PREFIX)\n" if prefix else "")
        + f"  home:            {stack.home}  (airflow.cfg, airflow.db, task logs in logs/)\n"
        f"\nlogs:\n{logs}\n"
        "Ctrl-C to stop (the home, its database and logs are deleted)."
    )


def _without_password(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    host = parsed.netloc.rpartition("@")[2]
    user = parsed.username or ""
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{host}"))


def _create_catalog_topics(cluster: Any, brokers: int) -> None:
    from starling.topics import CATALOG

    specs = list(CATALOG.for_cluster(brokers).all_topics())
    cluster.create_topics(
        [(spec.name, spec.partitions, spec.replicas, spec.kafka_config()) for spec in specs]
    )
    print(f"created {len(specs)} topics from the catalog: {', '.join(s.name for s in specs)}")


def _first_dead_node(cluster: Any) -> str | None:
    for node in cluster.nodes:
        if not node.is_running:
            return f"Kafka node {node.node_id} exited; see {node.server_log}"
    return None


def _wait_for_stop_signal(check_health: Callable[[], str | None]) -> str | None:
    """Block until SIGINT/SIGTERM (returns None) or until `check_health` reports a
    problem (returns it)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(1.0):
            problem = check_health()
            if problem:
                print(problem, flush=True)
                return problem
        return None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _indented_json(config: dict[str, str]) -> str:
    return json.dumps(config, indent=2)
