"""Benchmark of the traffic generator: how close does it get to a raw producer?

Prints, in one run, on one broker:

  (a) full generator rate: generate + encode + produce + flush, events/s
  (b) raw confluent-kafka producer rate with the same producer settings, sending
      pre-built payloads (the same encoded events, so the same sizes and compressibility)
  (c) a / b
  (d) pure generation rate (no encoding, no Kafka), and generation + encoding
  (e) decode + validate rate of the schemas (`starling.events.decode`)

Usage: .venv/bin/python bench/loadgen_bench.py [--bootstrap-servers HOST:PORT] [--count N]
Without --bootstrap-servers it starts a one-node broker with `starling.harness`.
Each Kafka measurement runs `--repeat` times, interleaved, and the best is reported:
on a shared machine the best run is the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import confluent_kafka

from starling.events import Event, decode, encode
from starling.loadgen import Burst, TrafficConfig, TrafficGenerator
from starling.loadgen.sink import (
    GENERATED_EVENT_TYPES,
    KafkaSink,
    TopicRouter,
    encode_batches,
    producer_config,
    send_batches,
)
from starling.topics import CATALOG


@dataclass
class Measurement:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def model_config(seed: int, users: int) -> TrafficConfig:
    return TrafficConfig(
        seed=seed, users=users, bursts=(Burst("eclipse", 30, 20, 40), Burst("aurora", 90, 10, 60))
    )


def timed(name: str, events: int, action: Callable[[], object]) -> Measurement:
    started = time.perf_counter()
    action()
    return Measurement(name, events, time.perf_counter() - started)


def measure_generation(count: int, users: int) -> tuple[Measurement, Measurement, list[Event]]:
    """Generation alone and generation + encoding, each from a fresh generator, keeping
    nothing (a list of 200k events would add garbage-collector work to the timing)."""

    def generate_only() -> None:
        for _ in TrafficGenerator(model_config(1, users)).events(count):
            pass

    def generate_and_encode() -> None:
        for event in TrafficGenerator(model_config(1, users)).events(count):
            encode(event)

    generate = timed("generate", count, generate_only)
    generate_encode = timed("generate + encode", count, generate_and_encode)
    events = list(TrafficGenerator(model_config(1, users)).events(count))
    return generate, generate_encode, events


def measure_decode(payloads: list[bytes]) -> Measurement:
    def decode_all() -> None:
        for payload in payloads:
            decode(payload)

    return timed("decode + validate", len(payloads), decode_all)


def measure_full(
    count: int, users: int, seed: int, config: dict[str, Any], router: TopicRouter
) -> Measurement:
    """What `starling loadgen --rate 0` does: generate, encode, produce, flush."""
    sink = KafkaSink(config)
    sink.check_topics(router.topic_for_type(cls) for cls in GENERATED_EVENT_TYPES)
    # The clock starts before the generator is built, as it would for a CLI user.
    started = time.perf_counter()
    generator = TrafficGenerator(model_config(seed, users))
    report = send_batches(encode_batches(generator.events(count), router), sink, rate=0)
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"full run failed: {report.summary()}")
    return Measurement("generator -> Kafka", report.delivered, seconds)


def measure_raw(records: list[tuple[str, bytes, bytes]], config: dict[str, Any]) -> Measurement:
    """A plain confluent-kafka loop: produce pre-built records, poll, flush. Same
    producer settings and the same failure-only delivery reports as the sink, so only
    generation, encoding and the driver loop differ."""
    failed = 0

    def on_failure(_error: Any, _message: Any) -> None:
        nonlocal failed
        failed += 1

    producer = confluent_kafka.Producer(
        {**config, "delivery.report.only.error": True, "on_delivery": on_failure}
    )
    producer.list_topics(timeout=10)  # connect before the clock starts, as the sink does
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for index, (topic, key, payload) in enumerate(records):
        while True:
            try:
                produce(topic, payload, key)
                break
            except BufferError:
                poll(0.05)
        if index % 1000 == 0:
            poll(0)
    producer.flush(120)
    seconds = time.perf_counter() - started
    if failed or len(producer):
        raise SystemExit(f"raw run failed: {failed} failed, {len(producer)} undelivered")
    return Measurement("raw producer", len(records), seconds)


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[tuple[str, Callable[[list[Any]], None], int]]:
    """(bootstrap servers, create_topics, broker count), starting a broker if needed."""
    if bootstrap:
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        admin = AdminClient({"bootstrap.servers": bootstrap})
        brokers = len(admin.list_topics(timeout=10).brokers)

        def create(requests: list[Any]) -> None:
            futures = admin.create_topics(
                [NewTopic(name, p, rf, config=dict(cfg)) for name, p, rf, cfg in requests]
            )
            for future in futures.values():
                future.result(timeout=30)

        yield bootstrap, create, brokers
        return
    from starling.harness.kafka import KafkaCluster

    print("starting a one-node broker (starling.harness) ...", file=sys.stderr)
    with KafkaCluster.start(nodes=1) as cluster:
        yield cluster.bootstrap_servers, cluster.create_topics, 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", help="broker to use (default: start one)")
    parser.add_argument("--count", type=int, default=200_000, help="events per measurement")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--compression", default="lz4", help="producer compression.type")
    parser.add_argument("--repeat", type=int, default=2, help="runs per Kafka measurement")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    generate, generate_encode, events = measure_generation(args.count, args.users)
    payloads = [encode(event) for event in events]
    decoded = measure_decode(payloads)
    average_size = sum(map(len, payloads)) / len(payloads)

    fulls: list[Measurement] = []
    raws: list[Measurement] = []
    with broker(args.bootstrap_servers) as (bootstrap, create_topics, brokers):
        catalog = CATALOG.for_cluster(brokers)
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        router = TopicRouter(prefix=prefix)
        specs = [catalog.topic_for(cls) for cls in GENERATED_EVENT_TYPES]
        create_topics(
            [(prefix + s.name, s.partitions, s.replicas, s.kafka_config()) for s in specs]
        )
        config = producer_config(bootstrap, compression=args.compression)
        records = [
            (router.topic_for(e), e.partition_key(), p)
            for e, p in zip(events, payloads, strict=True)
        ]
        del events
        # Warm-up, not reported: the first produce to fresh topics on a fresh broker
        # runs several times slower (segment files, JVM warm-up).
        measure_raw(records[:50_000], config)
        for attempt in range(args.repeat):
            raws.append(measure_raw(records, config))
            fulls.append(measure_full(args.count, args.users, 100 + attempt, config, router))
    full = max(fulls, key=lambda m: m.rate)
    raw = max(raws, key=lambda m: m.rate)

    print()
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, load average at start"
        f" {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    print(
        f"python {platform.python_version()}, confluent-kafka {confluent_kafka.__version__},"
        f" librdkafka {confluent_kafka.libversion()[0]}, compression {args.compression},"
        f" {args.count:,} events/run, average payload {average_size:.0f} B,"
        f" {args.users:,} users, best of {args.repeat}"
    )
    print()
    rows = [
        ("(a) generator -> Kafka (generate + encode + produce + flush)", full.rate),
        ("(b) raw confluent-kafka producer, pre-built payloads", raw.rate),
        ("(d) generation only (in process, no encoding)", generate.rate),
        ("    generation + encoding", generate_encode.rate),
        ("(e) decode + validate (starling.events.decode)", decoded.rate),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'measurement':<{width}}  {'events/s':>12}")
    print(f"{'-' * width}  {'-' * 12}")
    for label, rate in rows:
        print(f"{label:<{width}}  {rate:>12,.0f}")
    print(f"{'(c) ratio a / b':<{width}}  {full.rate / raw.rate:>12.2f}")
    print()
    for label, runs in (("generator -> Kafka", fulls), ("raw", raws)):
        print(f"runs, {label}: " + ", ".join(f"{m.rate:,.0f}" for m in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
