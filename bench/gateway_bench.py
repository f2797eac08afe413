"""Gateway benchmark: events accepted through `POST /v1/events` against the raw producer,
and the cost of verifying tokens.

    .venv/bin/python bench/gateway_bench.py [--events 5000] [--reads 20000] [--clients 64]

Starts its own Kafka broker (1 node), Redis and a token issuer serving its JWKS on
127.0.0.1 (tests/tokens.py), then on the same broker, one after the other, sends the
same generated tweets:

1. raw confluent-kafka, idempotent, acks=all, waiting for every acknowledgement at the
   end (a batch producer: the ceiling, not what a request/response API can reach);
2. raw confluent-kafka with `--clients` events in flight, each awaited like a request;
3. the gateway as its own process (`starling run gateway`, as deployed), `--clients`
   concurrent keep-alive HTTP/1.1 connections, each POST answered 202 only after the
   broker's acknowledgement.

Printed side by side with the ratio of (3) to (1) and (2). Then, authenticated: two
gateway processes side by side, one verifying EdDSA tokens (`STARLING_GATEWAY_AUTH=token`,
each client holding its own user's token, as a signed-in client does) and one taking the
identity header from a trusted proxy (`STARLING_GATEWAY_AUTH=header`, the unverified
baseline); timeline reads and event posts against each, in alternating rounds (medians),
with the ratio verified / unverified (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the issuer of tests/tokens.py

from tests.tokens import TokenIssuer

from starling.events import Platform, TweetCreated, encode, new_event
from starling.harness._process import free_ports
from starling.harness.kafka import KafkaCluster
from starling.harness.redis import RedisServer
from starling.runtime.config import RuntimeSettings
from starling.store import keys
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


def post_request(payload: bytes, identity: bytes = b"") -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nHost: bench\r\n%s"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (identity, len(payload), payload)
    )


def read_request(user: int, identity: bytes) -> bytes:
    return b"GET /v1/users/%d/timeline?limit=20 HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (
        user,
        identity,
    )


async def drive(host: str, port: int, per_client: list[list[bytes]], expect: bytes) -> float:
    """One keep-alive HTTP/1.1 connection per list, its requests one at a time; requests/s.
    A bare asyncio client: httpx's pool costs more CPU per request than the server under
    test, and on a small machine the client would be what gets measured."""

    async def client(requests: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in requests:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                assert status == expect, (status, body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(requests) for requests in per_client))
    return sum(map(len, per_client)) / (time.perf_counter() - started)


def spread(requests: list[bytes], clients: int) -> list[list[bytes]]:
    return [requests[index::clients] for index in range(clients)]


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
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
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
        issuer = TokenIssuer.start(algorithms=("EdDSA",))
        base_env = {
            **os.environ,
            "STARLING_SERVICE": "gateway",
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
            "KAFKA_GROUP_ID": settings.group_id,
            "STORE_HOST": redis_server.host,
            "STORE_PORT": str(redis_server.port),
            "STARLING_TOPIC_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
        }
        modes = {
            "header": {
                "STARLING_GATEWAY_AUTH": "header",
                "STARLING_GATEWAY_TRUSTED_PROXIES": "127.0.0.0/8",
            },
            "token": {
                "STARLING_GATEWAY_ISSUER": issuer.issuer,
                "STARLING_GATEWAY_AUDIENCE": issuer.audience,
            },
        }
        ports: dict[str, int] = {}
        processes: list[subprocess.Popen[bytes]] = []
        command = [sys.executable, "-m", "starling.run_cli", "gateway"]
        try:
            for mode, extra in modes.items():
                http_port, metrics_port = free_ports(2)
                env = {
                    **base_env,
                    **extra,
                    "HTTP_PORT": str(http_port),
                    "METRICS_PORT": str(metrics_port),
                }
                processes.append(subprocess.Popen(command, env=env))
                wait_ready(f"http://127.0.0.1:{metrics_port}/readyz")
                ports[mode] = http_port
            # The raw-producer comparison: the unverified gateway, identity from the header.
            header_posts = spread(
                [
                    post_request(p, b"X-Starling-User: %d\r\n" % (i % 1000 + 1))
                    for i, p in enumerate(payloads)
                ],
                args.clients,
            )
            asyncio.run(drive("127.0.0.1", ports["header"], [r[:3] for r in header_posts], b"202"))
            gateway = asyncio.run(drive("127.0.0.1", ports["header"], header_posts, b"202"))
            auth_rows = compare_auth(
                ports, issuer, redis_server, args.reads, args.events, args.clients, args.rounds
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            issuer.close()
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
    print()
    title = f"authenticated, {args.clients} clients (median of {args.rounds})"
    print(f"{title:40} {'verified req/s':>15} {'unverified req/s':>17} {'ratio':>7}")
    for name, verified, unverified in auth_rows:
        print(f"{name:40} {verified:>15,.0f} {unverified:>17,.0f} {verified / unverified:>7.2f}")


def compare_auth(
    ports: dict[str, int],
    issuer: TokenIssuer,
    redis_server: RedisServer,
    reads: int,
    events: int,
    clients: int,
    rounds: int,
) -> list[tuple[str, float, float]]:
    """Timeline reads and event posts against the verifying and the header-mode gateway,
    alternating, `rounds` times each; medians. Client i is user i + 1 with one token."""
    import redis

    store = redis.Redis(host=redis_server.host, port=redis_server.port)
    pipe = store.pipeline(transaction=False)
    for user in range(1, clients + 1):
        pipe.zadd(keys.timeline(user), {str(user * 1000 + n): user * 1000 + n for n in range(40)})
    pipe.execute()
    store.close()
    tokens = {user: issuer.mint(user, lifetime_s=3600) for user in range(1, clients + 1)}

    def identity(mode: str, user: int) -> bytes:
        if mode == "token":
            return b"Authorization: Bearer %s\r\n" % tokens[user].encode()
        return b"X-Starling-User: %d\r\n" % user

    def workload(mode: str, kind: str, count: int, offset: int) -> list[list[bytes]]:
        per_client: list[list[bytes]] = []
        for index in range(clients):
            user = index + 1
            head = identity(mode, user)
            if kind == "read":
                per_client.append([read_request(user, head)] * (count // clients))
            else:
                per_client.append(
                    [
                        post_request(
                            encode(
                                new_event(
                                    TweetCreated,
                                    tweet_id=offset + index * count + n + 1,
                                    author_id=user,
                                    text=f"authenticated tweet {n} #bench",
                                    platform=Platform.WEB,
                                )
                            ),
                            head,
                        )
                        for n in range(count // clients)
                    ]
                )
        return per_client

    results: dict[tuple[str, str], list[float]] = {}
    for mode in ("header", "token"):  # warm up: connections, caches, the token cache
        asyncio.run(drive("127.0.0.1", ports[mode], workload(mode, "read", clients * 5, 0), b"200"))
    offset = 10_000_000
    for round_ in range(rounds):
        for kind, count, expect in (("read", reads, b"200"), ("post", events, b"202")):
            # Each mode goes first in every other round: neither gains from going second.
            for mode in ("header", "token") if round_ % 2 == 0 else ("token", "header"):
                offset += count * clients + clients
                requests = workload(mode, kind, count, offset)
                rate = asyncio.run(drive("127.0.0.1", ports[mode], requests, expect))
                results.setdefault((kind, mode), []).append(rate)
    rows = []
    for kind, name in (
        ("read", "GET timeline (limit 20)"),
        ("post", "POST /v1/events, 202 after ack"),
    ):
        verified = statistics.median(results[(kind, "token")])
        unverified = statistics.median(results[(kind, "header")])
        rows.append((name, verified, unverified))
        print(
            f"  {kind}: verified {[f'{r:,.0f}' for r in results[(kind, 'token')]]},"
            f" unverified {[f'{r:,.0f}' for r in results[(kind, 'header')]]}"
        )
    return rows


if __name__ == "__main__":
    main()
