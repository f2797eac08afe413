"""`starling dev ...`: run real Kafka / Redis locally, or pre-fetch the Kafka jars.

Only argparse is imported here; the harness modules (and confluent-kafka, cryptography)
load when a `dev` command actually runs, so `starling --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="run real Kafka/Redis locally for development and tests",
        description="Run a real Kafka cluster or Redis server locally (until Ctrl-C), "
        "or fetch and cache the Kafka broker jars.",
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
