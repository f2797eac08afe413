"""`starling status`: what the local stack of a data directory is doing, as one table.

It reads `state.json` (written by `starling up`), then asks each component itself: the
broker (topics, under-replicated partitions, message counts, each service group's lag,
DLQ sizes), the store (PING, key count), each HTTP service's and stream service's
/readyz, and Airflow's health endpoint and latest DAG runs.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starling.harness.stack import STREAM_SERVICES, pid_alive, probe, read_state

_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Row:
    component: str
    detail: str
    healthy: bool | None  # None: information, not a health check


def collect(data_dir: Path) -> tuple[list[Row], str | None]:
    """The rows, or (no rows, a one-line reason) when no stack runs from `data_dir`."""
    state = read_state(data_dir)
    if state is None or not pid_alive(int(state.get("pid", 0))):
        return [], (
            f"no `starling up` running from {data_dir}; start one with"
            f" `starling up --data-dir {data_dir}`"
        )
    rows: list[Row] = []
    if not state.get("ready"):
        rows.append(Row("starling up", "still starting", False))
    rows += _kafka_rows(state["bootstrap"])
    rows += _store_rows(state["store_url"])
    airflow_seen = False
    for component in state.get("components", []):
        kind = component["kind"]
        if kind in ("http", "service"):
            ok = probe(component["health_url"])
            detail = f"{component['address']}  /readyz"
            if component["name"] == "gateway":
                streams = open_streams(component["health_url"])
                detail += f", {streams} open stream(s)" if streams is not None else ""
            rows.append(Row(component["name"], detail, ok))
        elif kind == "airflow" and not airflow_seen:
            airflow_seen = True
            rows += _airflow_rows(state.get("airflow_url", ""), data_dir)
        elif kind == "loadgen":
            alive = all(pid_alive(int(pid)) for pid in component["pids"])
            rows.append(Row("loadgen", component["address"], alive))
    return rows, None


def open_streams(health_url: str, timeout: float = 3.0) -> int | None:
    """The gateway's open SSE streams, from the metrics served beside its /readyz; None
    when they cannot be read (the health row says why the gateway is unwell)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = health_url.rsplit("/", 1)[0] + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "starling_gateway_streams":
            return int(sum(sample.value for sample in family.samples))
    return None


def _kafka_rows(bootstrap: str) -> list[Row]:
    from confluent_kafka import (
        Consumer,
        ConsumerGroupTopicPartitions,
        KafkaError,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient

    coordinator_loading = {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 5000,
    }
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
    except Exception as error:
        return [Row("kafka", f"{bootstrap} unreachable: {error}", False)]
    topics = {name: topic for name, topic in metadata.topics.items() if not name.startswith("__")}
    under = sum(
        1
        for topic in topics.values()
        for partition in topic.partitions.values()
        if len(partition.isrs) < len(partition.replicas)
    )
    rows = [
        Row(
            "kafka",
            f"{bootstrap}: {len(metadata.brokers)} broker(s),"
            f" {under} under-replicated partition(s)",
            under == 0,
        )
    ]
    consumer = Consumer({**config, "group.id": "starling-status", "enable.auto.commit": False})
    try:
        high: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        for name, topic in sorted(topics.items()):
            total = 0
            for partition in topic.partitions:
                low, top = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=_TIMEOUT_S
                )
                high[(name, partition)] = top
                total += top - low
            counts[name] = total
        for name, total in counts.items():
            if name.endswith(".dlq"):
                continue
            dlq = counts.get(f"{name}.dlq")
            detail = f"{total} message(s)" + (f", DLQ {dlq}" if dlq is not None else "")
            # A dead-lettered event is a fault someone should look at.
            rows.append(Row(f"topic {name}", detail, None if not dlq else False))
        for service in STREAM_SERVICES:
            group = f"starling-{service}"
            futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            try:
                result = futures[group].result(timeout=_TIMEOUT_S)
            except KafkaException as error:
                # Right after a broker starts it is still loading the group's offsets:
                # a passing state, not a fault.
                loading = error.args[0].code() in coordinator_loading
                detail = "offsets loading" if loading else f"unknown: {error}"
                rows.append(Row(f"lag {group}", detail, None if loading else False))
                continue
            except Exception as error:
                rows.append(Row(f"lag {group}", f"unknown: {error}", False))
                continue
            committed = [tp for tp in result.topic_partitions if tp.offset >= 0]
            lag = sum(max(0, high.get((tp.topic, tp.partition), 0) - tp.offset) for tp in committed)
            rows.append(
                Row(
                    f"lag {group}",
                    f"{lag} message(s) behind on {len(committed)} partition(s)"
                    if committed
                    else "nothing committed yet",
                    None,
                )
            )
    finally:
        consumer.close()
    return rows


def _store_rows(url: str) -> list[Row]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S) as connection:
            connection.sendall(b"PING\r\nDBSIZE\r\n")
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = connection.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        return [Row("store", f"{url} unreachable: {error}", False)]
    lines = reply.split(b"\r\n")
    ok = lines[0] == b"+PONG"
    keys = lines[1].lstrip(b":").decode() if len(lines) > 1 else "?"
    return [Row("store", f"{url}: PING {'ok' if ok else repr(lines[0])}, {keys} key(s)", ok)]


def _airflow_rows(api_url: str, data_dir: Path) -> list[Row]:
    try:
        # The api-server answers slowly while the scheduler is busy on a small machine.
        health_url = f"{api_url}/api/v2/monitor/health"
        with urllib.request.urlopen(health_url, timeout=3 * _TIMEOUT_S) as r:
            health: dict[str, Any] = json.loads(r.read())
    except (OSError, urllib.error.URLError, ValueError) as error:
        return [Row("airflow api-server", f"{api_url} unreachable: {error}", False)]
    rows = [Row("airflow api-server", api_url, True)]
    for key in ("scheduler", "dag_processor", "triggerer"):
        status = (health.get(key) or {}).get("status")
        rows.append(Row(f"airflow {key.replace('_', '-')}", str(status), status == "healthy"))
    return rows + _dag_run_rows(data_dir / "airflow" / "airflow.db")


def _dag_run_rows(database: Path) -> list[Row]:
    """The latest run of each DAG, read-only from the metadata database."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            latest = connection.execute(
                "SELECT dag_id, state, run_type, MAX(id) FROM dag_run GROUP BY dag_id"
                " ORDER BY dag_id"
            ).fetchall()
    except sqlite3.Error as error:
        return [Row("airflow DAG runs", f"unreadable: {error}", None)]
    if not latest:
        return [Row("airflow DAG runs", "none yet", None)]
    return [
        Row(f"dag {dag_id}", f"latest run: {state} ({run_type})", state != "failed")
        for dag_id, state, run_type, _id in latest
    ]


def render(rows: list[Row]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="starling status")
    table.add_column("component")
    table.add_column("detail")
    table.add_column("health")
    for row in rows:
        mark = "" if row.healthy is None else ("ok" if row.healthy else "UNHEALTHY")
        table.add_row(row.component, row.detail, mark)
    console = Console(width=120, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()
