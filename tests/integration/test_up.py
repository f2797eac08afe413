"""`starling up` as a user runs it: a real process with a temporary data directory, every
component a real process. It must print its table with every component healthy, data must
flow (status exits 0, the tweets topic grows, a signed-in user reads a non-empty timeline
through the gateway), and SIGINT must leave no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from starling.harness.stack import DEV_PASSWORD, STATE_FILE, pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UP_TIMEOUT_S = 180.0


def starling(*argv: str) -> list[str]:
    return [sys.executable, "-m", "starling.cli", *argv]


def wait_for(output: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = output.read_text(errors="replace")
        if text in content:
            return content
        if process.poll() is not None:
            pytest.fail(f"starling up exited with {process.returncode}:\n{content}")
        time.sleep(0.5)
    pytest.fail(f"{text!r} not printed within {timeout:.0f} s:\n{output.read_text()}")


def status(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        starling("status", "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def topic_count(table: str, topic: str) -> int:
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1] == f"topic {topic}":
            return int(cells[2].split()[0])
    raise AssertionError(f"no row for topic {topic} in:\n{table}")


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def some_timeline(identity_url: str, gateway_url: str, timeout: float = 60.0) -> Any:
    """The first non-empty home timeline of users u1..u10, read as that user, signed in."""
    # Signed in once each: sign-ins are rate limited per address.
    tokens = {
        user: post_json(
            f"{identity_url}/v1/sessions", {"username": f"u{user}", "password": DEV_PASSWORD}
        )["access_token"]
        for user in range(1, 11)
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for user, token in tokens.items():
            timeline = get_json(f"{gateway_url}/v1/users/{user}/timeline", token)
            if timeline["tweets"]:
                return timeline
        time.sleep(2)
    return None


def assert_components_use_scram(data_dir: Path, state: dict[str, Any], printed: str) -> None:
    """Every component talks to Kafka over SASL_SSL as its own principal of the access map,
    as in the cluster; the passwords are kept 0600 and never printed."""
    users = data_dir / "kafka-users.json"
    passwords = json.loads(users.read_text())
    assert os.stat(users).st_mode & 0o777 == 0o600
    for component in state["components"]:
        if component["kind"] not in ("service", "http"):
            continue
        env = process_env(component["pids"][0])
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", component["name"]
        assert env["KAFKA_SASL_USERNAME"] == component["name"]
        assert env["KAFKA_SASL_PASSWORD"] == passwords[component["name"]]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == state["sasl_bootstrap"]
        assert Path(env["KAFKA_SSL_CA_LOCATION"]).is_file()
    (loadgen,) = [c for c in state["components"] if c["name"] == "loadgen"]
    argv = Path(f"/proc/{loadgen['pids'][0]}/cmdline").read_bytes().split(b"\0")
    at = argv.index(b"--security-protocol")
    assert argv[at : at + 2] == [b"--security-protocol", b"SASL_SSL"]
    assert argv[argv.index(b"--sasl-username") + 1] == b"loadgen"
    env = process_env(loadgen["pids"][0])
    assert env["STARLING_KAFKA_SASL_PASSWORD"] == passwords["loadgen"]
    assert not any(password in printed for password in passwords.values())

    # The authorizer holds each principal to the access map: the traffic generator sees
    # (Describe) only the topics it writes.
    from confluent_kafka.admin import AdminClient

    ingestion_env = process_env(
        next(c for c in state["components"] if c["name"] == "ingestion")["pids"][0]
    )
    admin = AdminClient(
        {
            "bootstrap.servers": state["sasl_bootstrap"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "loadgen",
            "sasl.password": passwords["loadgen"],
            "ssl.ca.location": ingestion_env["KAFKA_SSL_CA_LOCATION"],
        }
    )
    visible = set(admin.list_topics(timeout=10).topics)
    assert visible == {"user.logins", "tweets", "user.interactions"}, visible


def test_up_runs_the_stack_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    output = tmp_path / "up.out"
    # Few users, so a followed user posts soon at a gentle rate.
    argv = starling(
        "up", "--no-airflow", "--data-dir", str(data_dir), "--rate", "50", "--users", "50"
    )
    argv += ["--gateway-port", "0", "--identity-port", "0"]
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    pids: list[int] = []
    try:
        started = time.monotonic()
        printed = wait_for(output, "all healthy after", process, UP_TIMEOUT_S)
        print(f"\nstarling up to all-healthy: {time.monotonic() - started:.1f} s (wall)")
        table = printed.split("starling up", 1)[1]
        for name in ("kafka", "store", "identity", "gateway", "ingestion", "trends"):
            assert f"│ {name}" in table
        for name in ("timelines", "notifier", "loadgen"):
            assert f"│ {name}" in table
        assert "UNHEALTHY" not in table

        state = json.loads((data_dir / STATE_FILE).read_text())
        pids = [pid for component in state["components"] for pid in component["pids"]]
        assert len(pids) == 9 and all(pid_alive(pid) for pid in pids)

        assert_components_use_scram(data_dir, state, printed)

        first = status(data_dir)
        assert first.returncode == 0, first.stdout + first.stderr
        time.sleep(3)
        second = status(data_dir)
        assert second.returncode == 0, second.stdout + second.stderr
        assert topic_count(second.stdout, "tweets") > topic_count(first.stdout, "tweets") > 0

        # A signed-in user reads a non-empty home timeline through the gateway.
        assert some_timeline(state["identity_url"], state["gateway_url"])

        # The gateway's open streams are counted by status.
        assert "0 open stream(s)" in second.stdout, second.stdout
        token = post_json(
            f"{state['identity_url']}/v1/sessions", {"username": "u11", "password": DEV_PASSWORD}
        )["access_token"]
        stream_url = f"{state['gateway_url']}/v1/users/11/stream"
        with httpx.stream(
            "GET", stream_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as live:
            assert live.status_code == 200
            assert "1 open stream(s)" in status(data_dir).stdout
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        code = process.wait(timeout=60)
    print(f"stop after SIGINT: {time.monotonic() - stopped:.1f} s")
    assert code == 0, output.read_text()
    left = [pid for pid in pids if pid_alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
    # Nor any child of theirs: no process group of the stack survives.
    survivors = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _pgid(int(entry.name)) in set(pids)
    ]
    assert not survivors, survivors
    assert not (data_dir / STATE_FILE).exists()
    assert os.stat(data_dir / "identity-seed").st_mode & 0o777 == 0o600
    # The store's data stays for the next `starling up` to resume.
    assert any(path.stat().st_size > 0 for path in (data_dir / "store").rglob("*.aof"))


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if b"=" in entry)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The offsets `group` has committed, by (topic, partition)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    loading = {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # A broker that has just started loads __consumer_offsets before it answers for a
    # group; until then the answer is a retriable COORDINATOR_LOAD_IN_PROGRESS.
    deadline = time.monotonic() + 60
    while True:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        try:
            result = futures[group].result(timeout=10)
        except KafkaException as error:
            if error.args[0].code() not in loading or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def first_messages(bootstrap: str, topic: str, count: int) -> list[bytes | None]:
    """The first `count` messages of `topic` (partition 0), read without a group."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-up-reader", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: list[bytes | None] = []
        deadline = time.monotonic() + 20
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def run_up(data_dir: Path, output: Path) -> subprocess.Popen[bytes]:
    argv = starling(
        "up", "--no-airflow", "--data-dir", str(data_dir), "--rate", "50", "--users", "50"
    )
    argv += ["--gateway-port", "0", "--identity-port", "0"]
    with output.open("wb") as sink:
        return subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)


def interrupt(process: subprocess.Popen[bytes], output: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, output.read_text()


def test_a_second_up_resumes_kafka(tmp_path: Path) -> None:
    """Kafka's data survives `starling up` runs: the topics keep their messages and the
    services' groups their committed offsets (no reprocessing from zero)."""
    from starling.harness.kafka import KafkaCluster

    data_dir = tmp_path / "data"
    first_out = tmp_path / "up1.out"
    process = run_up(data_dir, first_out)
    try:
        wait_for(first_out, "all healthy after", process, UP_TIMEOUT_S)
        bootstrap = json.loads((data_dir / STATE_FILE).read_text())["bootstrap"]
        deadline = time.monotonic() + 60
        while not sum(committed(bootstrap, "starling-ingestion").values()):
            assert time.monotonic() < deadline, "ingestion committed no offset within 60 s"
            time.sleep(1)
        before = committed(bootstrap, "starling-ingestion")
        head = first_messages(bootstrap, "tweets", 5)
        assert len(head) == 5
    finally:
        interrupt(process, first_out)

    # The kept broker alone, no services: what the next `starling up` starts from.
    with KafkaCluster.start(directory=data_dir / "kafka") as cluster:
        after = committed(cluster.bootstrap_servers, "starling-ingestion")
        assert first_messages(cluster.bootstrap_servers, "tweets", 5) == head
    assert before.keys() <= after.keys()
    assert all(after[key] >= offset for key, offset in before.items()), (before, after)

    second_out = tmp_path / "up2.out"
    process = run_up(data_dir, second_out)
    try:
        printed = wait_for(second_out, "all healthy after", process, UP_TIMEOUT_S)
        assert "0 topics created" in printed
        bootstrap = json.loads((data_dir / STATE_FILE).read_text())["bootstrap"]
        assert first_messages(bootstrap, "tweets", 5) == head
        resumed = committed(bootstrap, "starling-ingestion")
        assert all(resumed[key] >= offset for key, offset in after.items()), (after, resumed)
    finally:
        interrupt(process, second_out)

    # --fresh starts over: a new, empty cluster.
    fresh_out = tmp_path / "up3.out"
    argv = starling("up", "--no-airflow", "--data-dir", str(data_dir), "--fresh", "--rate", "1")
    argv += ["--users", "50", "--gateway-port", "0", "--identity-port", "0"]
    with fresh_out.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        printed = wait_for(fresh_out, "all healthy after", process, UP_TIMEOUT_S)
        assert "0 kept" in printed
    finally:
        interrupt(process, fresh_out)
