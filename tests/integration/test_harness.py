"""The harness itself, against the real servers it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from starling.harness.kafka import KafkaCluster, KafkaHarnessError
from starling.harness.kafka_dist import KafkaFetchError, ensure_kafka
from starling.harness.redis import RedisHarnessError, RedisServer

pytestmark = pytest.mark.integration

TopicNames = Callable[..., str]


def produce(config: dict[str, str], topic: str, values: list[bytes]) -> None:
    """Produce with acks=all and fail the test on any delivery error."""
    producer = Producer({**config, "acks": "all", "message.timeout.ms": "20000"})
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            errors.append(error)

    for value in values:
        producer.produce(topic, value, on_delivery=on_delivery)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert errors == []


def consume(config: dict[str, str], topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer(
        {
            **config,
            "group.id": f"harness-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is None, error
            value = message.value()
            assert isinstance(value, bytes)
            values.append(value)
    finally:
        consumer.close()
    return values


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie is dead, just not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- Kafka, single node


def test_plaintext_produce_and_consume(kafka: KafkaCluster, topic_name: TopicNames) -> None:
    topic = topic_name()
    kafka.create_topics([(topic, 1, 1)])
    kafka.create_topics([(topic, 1, 1)])  # already existing topics are fine

    produce(kafka.client_config(), topic, [b"hello"])

    assert consume(kafka.client_config(), topic, 1) == [b"hello"]


def test_sasl_ssl_with_scram_user(kafka: KafkaCluster, topic_name: TopicNames) -> None:
    topic = topic_name()
    kafka.create_topics([(topic, 1, 1, {"cleanup.policy": "delete"})])
    kafka.add_scram_user("harness-svc", "s3cret-harness")
    config = kafka.client_config("sasl_ssl", user="harness-svc", password="s3cret-harness")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    # Host-name verification stays on: the broker certificate must name 127.0.0.1.
    assert config["ssl.endpoint.identification.algorithm"] == "https"

    produce(config, topic, [b"over TLS"])

    assert consume(config, topic, 1) == [b"over TLS"]


def test_sasl_ssl_wrong_password_is_rejected(kafka: KafkaCluster) -> None:
    kafka.add_scram_user("harness-wrong-pw", "right-password")
    errors: list[KafkaError] = []
    producer = Producer(
        {
            **kafka.client_config("sasl_ssl", user="harness-wrong-pw", password="wrong-password"),
            "error_cb": errors.append,
        }
    )
    deadline = time.monotonic() + 20
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        assert time.monotonic() < deadline, f"no authentication error, got {errors}"
        producer.poll(0.2)

    auth_error = next(e for e in errors if e.code() == KafkaError._AUTHENTICATION)
    assert "Authentication failed" in auth_error.str()


def test_authorizer_denies_without_acl_and_allows_with_one(topic_name: TopicNames) -> None:
    with KafkaCluster.start(nodes=1, authorizer=True) as cluster:
        topic = topic_name()
        cluster.create_topics([(topic, 1, 1)])  # PLAINTEXT is User:ANONYMOUS, a super user
        cluster.add_scram_user("acl-app", "acl-app-password")
        app_config = cluster.client_config("sasl_ssl", user="acl-app", password="acl-app-password")

        producer = Producer({**app_config, "acks": "all", "message.timeout.ms": "10000"})
        outcomes: list[KafkaError | None] = []
        producer.produce(topic, b"x", on_delivery=lambda error, _m: outcomes.append(error))
        producer.flush(15)
        assert [e.code() if e else None for e in outcomes] == [
            KafkaError.TOPIC_AUTHORIZATION_FAILED
        ]

        admin = cluster.admin()
        grant = AclBinding(
            ResourceType.TOPIC,
            topic,
            ResourcePatternType.LITERAL,
            "User:acl-app",
            "*",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        )
        for future in admin.create_acls([grant]).values():
            future.result(timeout=15)

        deadline = time.monotonic() + 15
        while True:  # ACLs reach the authorizer through the metadata log
            try:
                produce(app_config, topic, [b"allowed"])
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # The admin user created at format time is a super user over SASL_SSL.
        assert consume(cluster.client_config("sasl_ssl"), topic, 1) == [b"allowed"]


# ---------------------------------------------------------------- Kafka, three nodes


def test_three_nodes_keep_accepting_acks_all_with_one_node_stopped(
    kafka_cluster3: KafkaCluster, topic_name: TopicNames
) -> None:
    cluster = kafka_cluster3
    topic = topic_name()
    cluster.create_topics([(topic, 3, 3, {"min.insync.replicas": "2"})])
    config = cluster.client_config()
    produce(config, topic, [f"before-{i}".encode() for i in range(10)])

    cluster.stop_node(2)
    assert not cluster.nodes[2].is_running
    produce(config, topic, [f"during-{i}".encode() for i in range(10)])

    cluster.start_node(2)
    # Rejoined: node 2 is back in the ISR of every partition.
    admin = cluster.admin()
    deadline = time.monotonic() + 30
    while True:
        partitions = admin.list_topics(topic, timeout=5).topics[topic].partitions.values()
        if all(2 in partition.isrs for partition in partitions):
            break
        assert time.monotonic() < deadline, {p.id: p.isrs for p in partitions}
        time.sleep(0.2)
    produce(config, topic, [b"after"])

    received = consume(config, topic, 21)
    assert sorted(received) == sorted(
        [f"before-{i}".encode() for i in range(10)]
        + [f"during-{i}".encode() for i in range(10)]
        + [b"after"]
    )


def test_killed_node_restarts_with_its_data(
    kafka_cluster3: KafkaCluster, topic_name: TopicNames
) -> None:
    cluster = kafka_cluster3
    topic = topic_name()
    cluster.create_topics([(topic, 1, 3, {"min.insync.replicas": "2"})])
    produce(cluster.client_config(), topic, [b"survives a crash"])
    data_dir = cluster.nodes[1].data_dir
    old_pid = cluster.nodes[1].pid

    cluster.kill_node(1)
    assert old_pid is not None and not process_alive(old_pid)
    cluster.start_node(1)

    assert cluster.nodes[1].pid != old_pid
    assert cluster.nodes[1].data_dir == data_dir
    # Node 1 alone still has the partition's log from before the crash.
    only_node1 = {"bootstrap.servers": cluster.nodes[1].bootstrap_server}
    metadata = cluster.admin(**only_node1).list_topics(topic, timeout=10)
    assert 1 in metadata.topics[topic].partitions[0].replicas
    assert any(data_dir.glob(f"{topic}-0/*.log"))


def test_three_node_internal_topic_settings(kafka_cluster3: KafkaCluster) -> None:
    properties = cluster_properties(kafka_cluster3, 0)
    assert properties["offsets.topic.replication.factor"] == "3"
    assert properties["transaction.state.log.min.isr"] == "2"
    assert len(properties["controller.quorum.bootstrap.servers"].split(",")) == 3
    assert all(node.is_running for node in kafka_cluster3.nodes)


def cluster_properties(cluster: KafkaCluster, node_id: int) -> dict[str, str]:
    lines = cluster.nodes[node_id].properties_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


# ---------------------------------------------------------------- Kafka lifecycle and errors


def test_stop_leaves_no_java_process_or_directory() -> None:
    cluster = KafkaCluster.start(nodes=1)
    pids = [node.pid for node in cluster.nodes]
    assert all(pid is not None and process_alive(pid) for pid in pids)

    cluster.stop()

    assert not any(process_alive(pid) for pid in pids if pid is not None)
    assert not cluster.directory.exists()


def test_broker_that_dies_at_start_reports_its_log() -> None:
    # 16 MB of heap is not enough for a broker: it exits at start (ExitOnOutOfMemoryError).
    with pytest.raises(KafkaHarnessError) as raised:
        KafkaCluster.start(nodes=1, heap="16m", ready_timeout=60)
    message = str(raised.value)
    assert "exited with code" in message
    assert "server.log" in message


def test_fetch_failure_names_the_artifact_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARLING_CACHE", str(tmp_path))
    with pytest.raises(KafkaFetchError) as raised:
        ensure_kafka("0.0.0-no-such-version", progress=lambda _line: None)
    assert "org.apache.kafka:kafka_2.13:0.0.0-no-such-version" in str(raised.value)
    assert "last output" in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # no half-built cache left behind


# ---------------------------------------------------------------- Redis


def test_redis_set_and_get(redis_client: redis.Redis) -> None:
    redis_client.set("harness:key", b"value")
    assert redis_client.get("harness:key") == b"value"


def test_redis_restart_with_aof_keeps_data() -> None:
    with RedisServer.start(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("kept", b"1")
        port = server.port

        server.restart()
        assert server.port == port
        assert client.get("kept") == b"1"

        client.set("kept-after-crash", b"2")
        server.kill()  # appendfsync always: acknowledged writes survive SIGKILL
        server.restart()
        assert client.get("kept-after-crash") == b"2"
        client.close()


def test_redis_stop_leaves_no_process_or_directory() -> None:
    server = RedisServer.start()
    pid = server.pid
    assert pid is not None and process_alive(pid)

    server.stop()

    assert not process_alive(pid)
    assert not server.directory.exists()


def test_missing_redis_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RedisHarnessError, match="apt-get install -y redis-server"):
        RedisServer.start()


def test_children_die_when_the_python_parent_is_killed(tmp_path: Path) -> None:
    # A separate Python process starts a server, reports its pid, then is SIGKILLed:
    # no atexit hook runs, so only the harness watchdog can clean up.
    script = textwrap.dedent(
        """
        import sys, time
        from starling.harness.redis import RedisServer
        server = RedisServer.start()
        print(server.pid, server.directory, flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        pid_text, directory = child.stdout.readline().split()
        redis_pid = int(pid_text)
        assert process_alive(redis_pid)
    finally:
        child.kill()
        child.wait()

    deadline = time.monotonic() + 10
    while process_alive(redis_pid) or Path(directory).exists():
        assert time.monotonic() < deadline, "watchdog did not reap redis-server"
        time.sleep(0.05)
