"""Gateway benchmark: events accepted through `POST /v1/events` against the raw producer.

    .venv/bin/python bench/gateway_bench.py [--events 5000] [--clients 64]

Starts its own Kafka broker (1 node) and Redis, then on the same broker, one after the
other, sends the same generated tweets:

1. raw confluent-kafka, idempotent, acks=all, waiting for every acknowledgement at the
   end (a batch producer: the ceiling, not what a request/response API can reach);
2. raw confluent-kafka with `--clients` events in flight, each awaited like a request;
3. the gateway as its own process (`starling run gateway`, as deployed), `--clients`
   concurrent keep-alive HTTP/1.1 connections, each POST answered 202 only after the
   broker's acknowledgement.

Printed side by side with the ratio of (3) to (1) and (2).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from starling.events import Platform, TweetCreated, encode, new_event
from starling.harness._process import free_ports
from starling.harness.kafka import KafkaCluster
from starling.harness.redis import RedisServer
from starling.runtime.config import RuntimeSettings
from starling.topics import CATALOG, TWEETS


def tweets(count: int) -> list[bytes]:
    return [
        encode(
            new_event(
                TweetCreated,
                tweet_id=index + 1,
                author_id=index % 1000 + 1,
                text=f"tweet number {index} #bench",
                platform=Platform.WEB,
            )
        )
        for index in range(count)
    ]


def raw_batch(settings: RuntimeSettings, topic: str, payloads: list[bytes]) -> float:
    from confluent_kafka import Producer

    producer = Producer(settings.producer_config())
    started = time.perf_counter()
    for index, payload in enumerate(payloads):
        while True:
            try:
                producer.produce(topic, payload, str(index + 1).encode())
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    return len(payloads) / (time.perf_counter() - started)


def raw_in_flight(
    settings: RuntimeSettings, topic: str, payloads: list[bytes], in_flight: int
) -> float:
    """At most `in_flight` unacknowledged events, like `in_flight` waiting clients."""
    from confluent_kafka import Producer

    producer = Producer({**settings.producer_config(), "linger.ms": 1})
    slots = threading.Semaphore(in_flight)

    def acked(_error: object, _message: object) -> None:
        slots.release()

    started = time.perf_counter()
    for index, payload in enumerate(payloads):
        while not slots.acquire(timeout=0.001):
            producer.poll(0)
        producer.produce(topic, payload, str(index + 1).encode(), on_delivery=acked)
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(payloads) / (time.perf_counter() - started)


async def through_gateway(host: str, port: int, payloads: list[bytes], clients: int) -> float:
    """`clients` keep-alive HTTP/1.1 connections, one request in flight on each. A bare
    asyncio client: httpx's pool costs more CPU per request than the server under test,
    and on a small machine the client would be what gets measured."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                payload = queue.get_nowait()
                writer.write(
                    b"POST /v1/events HTTP/1.1\r\nHost: bench\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                assert status == b"202", body
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(payloads) / (time.perf_counter() - started)


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the gateway was not ready within {timeout_s:g} s ({url})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()},"
        f" load average {load:.2f} at start"
    )
    with KafkaCluster.start(nodes=1) as cluster, RedisServer.start() as redis_server:
        prefix = f"b{uuid.uuid4().hex[:8]}."
        spec = CATALOG.get(TWEETS)
        cluster.create_topics([(prefix + TWEETS, spec.partitions, 1, spec.kafka_config())])
        topic = prefix + TWEETS
        settings = RuntimeSettings(
            starling_service="gateway",
            kafka_bootstrap_servers=cluster.bootstrap_servers,
            store_host=redis_server.host,
            store_port=redis_server.port,
            starling_topic_prefix=prefix,
            kafka_group_id=f"bench-{prefix}",
        )
        payloads = tweets(args.events)
        raw_batch(settings, topic, payloads[:500])  # warm up the broker and the topic
        batch = raw_batch(settings, topic, payloads)
        in_flight = raw_in_flight(settings, topic, payloads, args.clients)
        http_port, metrics_port = free_ports(2)
        env = {
            **os.environ,
            "STARLING_SERVICE": "gateway",
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
            "KAFKA_GROUP_ID": settings.group_id,
            "STORE_HOST": redis_server.host,
            "STORE_PORT": str(redis_server.port),
            "STARLING_TOPIC_PREFIX": prefix,
            "HTTP_PORT": str(http_port),
            "METRICS_PORT": str(metrics_port),
            "STARLING_GATEWAY_TRUST_USER_HEADER": "false",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "starling.run_cli", "gateway"]
        gateway_process = subprocess.Popen(command, env=env)
        try:
            wait_ready(f"http://127.0.0.1:{metrics_port}/readyz")
            asyncio.run(through_gateway("127.0.0.1", http_port, payloads[:200], 8))  # warm up
            gateway = asyncio.run(through_gateway("127.0.0.1", http_port, payloads, args.clients))
        finally:
            gateway_process.terminate()
            gateway_process.wait(30)
    print(f"{'path':58} {'events/s':>10} {'gateway is':>11}")
    print(
        f"{'raw producer, batch (acks=all, idempotent, flush at end)':58} {batch:>10,.0f}"
        f" {gateway / batch:>10.1%}"
    )
    print(
        f"{f'raw producer, {args.clients} in flight, each ack awaited':58} {in_flight:>10,.0f}"
        f" {gateway / in_flight:>10.1%}"
    )
    print(
        f"{f'gateway POST /v1/events, {args.clients} clients, 202 after ack':58} {gateway:>10,.0f}"
    )


if __name__ == "__main__":
    main()
