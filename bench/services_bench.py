"""Stream services benchmark: the runtime and ingestion against the raw client, in one run.

    .venv/bin/python bench/services_bench.py [--tweets 100000] [--profile]

Starts its own Kafka broker (1 node) and Redis, loads generated tweets once, then
measures on the same broker, one after the other:

1. raw confluent-kafka consume, in batches of 1000, two ways: messages untouched (the
   original baseline) and each payload's length read once (`sum(map(len, batch))`, the
   least any consumer does with a message: the like-for-like baseline);
2. the runtime with a no-op handler (records built, offsets committed; with and without
   decoding; undecoded also at batches of 1000): target >= 70% of raw.
   Steps 1-2 run `--rounds` (5) times, interleaved; medians are reported, with the consuming
   thread's CPU time per message next to the wall-clock rate (a machine shared with
   other work moves wall-clock rates a lot, CPU per message much less). Every step runs
   under the collector threshold the runtime sets (`make_room_for_batches`), since that
   setting is process-wide;
3. ingestion, validate + enrich + publish, fan-out excluded: target >= 20k tweets/s/core;
4. fan-out timeline writes into Redis (pipelined scripts, plus ingestion's one
   `live:tweets` message per batch; also measured without it): target >= 100k writes/s;
5. tweet-to-timeline latency at a fixed offered rate (1k tweets/s): target p99 < 100 ms.

Ratios are what to compare across machines; the machine is printed with the numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from starling.events import TweetCreated, encode
from starling.harness.kafka import KafkaCluster
from starling.harness.redis import RedisServer
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.runtime.config import RuntimeSettings, ServiceName
from starling.runtime.consumer import ConsumerRuntime, make_room_for_batches
from starling.runtime.handler import BaseHandler, Outbox, Record
from starling.services.ingestion import IngestionHandler, IngestionSettings
from starling.store.client import connect
from starling.store.graph import load_loadgen_graph
from starling.store.live import publish_new_tweets
from starling.store.timelines import TimelineStore
from starling.topics import CATALOG, TWEETS


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()},"
        f" load average {load:.2f} at start"
    )


def generate_tweets(count: int, users: int = 10_000) -> tuple[TrafficGenerator, list[TweetCreated]]:
    generator = TrafficGenerator(TrafficConfig(seed=1, users=users, mix=(100.0, 0.0, 0.0)))
    tweets: list[TweetCreated] = []
    for event in generator.events(int(count * 1.3)):
        if isinstance(event, TweetCreated):
            tweets.append(event)
            if len(tweets) == count:
                break
    return generator, tweets


def produce(cluster: KafkaCluster, topic: str, tweets: Sequence[TweetCreated]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 20, "batch.size": 1_000_000}
    )
    for tweet in tweets:
        while True:
            try:
                producer.produce(topic, encode(tweet), tweet.partition_key())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


class Rate(NamedTuple):
    """Messages per second of wall-clock time, and per second of the consuming thread's CPU."""

    wall: float
    cpu: float


def raw_consume(cluster: KafkaCluster, topic: str, expected: int, *, touch: bool) -> Rate:
    """The client alone, from the first batch on (that batch not counted: it also pays for
    joining the group). `touch`: read each payload's length once."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    first: list[Any] = []
    while not first:
        first = consumer.consume(1000, 0.02)
    started, started_cpu = time.perf_counter(), time.thread_time()
    seen = len(first)
    while seen < expected:
        batch = consumer.consume(1000, 0.02)
        if touch:
            sum(map(len, batch))
        seen += len(batch)
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
    consumer.close()
    counted = expected - len(first)
    return Rate(counted / elapsed, counted / cpu)


class NoopHandler(BaseHandler):
    """Does nothing; with `decode=False` it also skips validation (payloads as bytes).
    Notes the clocks at each batch (in the runtime's thread), for `noop_rate`."""

    def __init__(self, topic: str, *, decode: bool = True) -> None:
        self._topic = topic
        self._type: type[Any] = TweetCreated if decode else bytes
        self.handled = 0
        self.marks: list[tuple[float, float, int]] = []

    @property
    def input_types(self) -> Mapping[str, type[Any]]:
        return {self._topic: self._type}

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        self.handled += len(records)
        self.marks.append((time.perf_counter(), time.thread_time(), self.handled))


def consume_rounds(
    cluster: KafkaCluster,
    topic: str,
    expected: int,
    rounds: int,
    settings: Callable[..., RuntimeSettings],
) -> list[Rate]:
    """Raw (untouched, touched) and no-op runtime (undecoded at the default batch size
    and at 1000, decoded), interleaved for `rounds` rounds: the median of each."""
    measured: list[tuple[Rate, ...]] = []
    for _ in range(rounds):
        measured.append(
            (
                raw_consume(cluster, topic, expected, touch=False),
                raw_consume(cluster, topic, expected, touch=True),
                noop_rate(settings(), NoopHandler(topic, decode=False), expected),
                noop_rate(
                    settings(starling_batch_size=1000), NoopHandler(topic, decode=False), expected
                ),
                noop_rate(settings(), NoopHandler(topic), expected),
            )
        )
    return [
        Rate(statistics.median(r.wall for r in rates), statistics.median(r.cpu for r in rates))
        for rates in zip(*measured, strict=True)
    ]


def noop_rate(settings: RuntimeSettings, handler: NoopHandler, expected: int) -> Rate:
    """The runtime from its first batch handed to the handler to its last (the first
    batch not counted, like the raw client's)."""
    runtime = ConsumerRuntime(settings, handler, serve_metrics=False)
    thread = threading.Thread(target=runtime.run)
    thread.start()
    while handler.handled < expected:
        time.sleep(0.005)
    runtime.request_stop()
    thread.join(30)
    (wall0, cpu0, count0), (wall1, cpu1, count1) = handler.marks[0], handler.marks[-1]
    return Rate((count1 - count0) / (wall1 - wall0), (count1 - count0) / (cpu1 - cpu0))


def runtime_rate(settings: RuntimeSettings, handler: Any, topic: str, expected: int) -> float:
    runtime = ConsumerRuntime(settings, handler, serve_metrics=False)
    processed = runtime.metrics.for_topic(runtime.metrics.processed, topic)
    thread = threading.Thread(target=runtime.run)
    thread.start()
    while processed._value.get() == 0:
        time.sleep(0.001)
    started = time.perf_counter()
    first = processed._value.get()
    while processed._value.get() < expected:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    runtime.request_stop()
    thread.join(30)
    return float(expected - first) / elapsed


def fan_out_rate(
    redis_port: int,
    generator: TrafficGenerator,
    tweets: Sequence[TweetCreated],
    *,
    announce: bool = True,
) -> tuple[float, int]:
    """Timeline writes/s as ingestion makes them: per batch of 1000 tweets one pipelined
    write, then (`announce`) one `live:tweets` message for the gateways, as ingestion
    does after its write."""
    client = connect(host="127.0.0.1", port=redis_port)
    client.flushdb()
    timelines = TimelineStore(client, cap=800)
    graph = generator.graph
    writes = 0
    started = time.perf_counter()
    for start in range(0, len(tweets), 1000):
        batch = tweets[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for tweet in batch:
            targets = [tweet.author_id, *graph.followers(tweet.author_id)]
            timelines.fan_out(pipe, tweet.tweet_id, targets)
            writes += len(targets)
        pipe.execute()
        if announce:
            live = client.pipeline(transaction=False)
            publish_new_tweets(live, [(tweet.tweet_id, tweet.author_id) for tweet in batch])
            live.execute()
    elapsed = time.perf_counter() - started
    client.close()
    return writes / elapsed, writes


def fan_out_rates(
    redis_port: int, generator: TrafficGenerator, tweets: Sequence[TweetCreated]
) -> tuple[float, float, int]:
    """Fan-out writes/s with and without the `live:tweets` announcement, and the writes.
    A warm-up (scripts loaded, allocator grown), then the two alternately, best of two
    each: the difference is a few round trips per 20k tweets, smaller than what the order
    of the runs alone does on a busy machine."""
    fan_out_rate(redis_port, generator, tweets[:5_000])
    announced: list[float] = []
    quiet: list[float] = []
    writes = 0
    for _ in range(2):
        rate, writes = fan_out_rate(redis_port, generator, tweets[:20_000])
        announced.append(rate)
        quiet.append(fan_out_rate(redis_port, generator, tweets[:20_000], announce=False)[0])
    return max(announced), max(quiet), writes


class LatencyIngestion(IngestionHandler):
    """Ingestion that records, per tweet, the time from the producer's timestamp to the
    moment its fan-out was written to the store."""

    latencies_ms: list[float]

    def handle(self, records: Sequence[Record], outbox: Outbox) -> None:
        super().handle(records, outbox)
        now_ms = time.time() * 1000
        self.latencies_ms.extend(now_ms - record.message.timestamp()[1] for record in records)


def latency_at_rate(
    cluster: KafkaCluster,
    settings: RuntimeSettings,
    redis_port: int,
    tweets: Sequence[TweetCreated],
    rate: float,
) -> tuple[float, float, float, int]:
    from confluent_kafka import Producer

    handler = LatencyIngestion(settings, client=connect(host="127.0.0.1", port=redis_port))
    handler.latencies_ms = []
    runtime = ConsumerRuntime(settings, handler, serve_metrics=False)
    thread = threading.Thread(target=runtime.run)
    thread.start()
    time.sleep(3.0)  # join the group before traffic starts
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 1, "enable.idempotence": True}
    )
    topic = settings.topic(TWEETS)
    interval = 1.0 / rate
    started = time.perf_counter()
    for index, tweet in enumerate(tweets):
        due = started + index * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, encode(tweet), tweet.partition_key())
        producer.poll(0)
    producer.flush(30)
    deadline = time.monotonic() + 30
    while len(handler.latencies_ms) < len(tweets) and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime.request_stop()
    thread.join(30)
    # The first second pays for connections and metadata; the target is steady state.
    values = sorted(handler.latencies_ms[int(rate) :])
    p50 = statistics.median(values)
    p99 = values[int(len(values) * 0.99) - 1]
    return p50, p99, values[-1], len(values)


def profile_noop_runtime(settings: RuntimeSettings, topic: str, expected: int) -> None:
    """cProfile of the runtime's thread with the no-op handler (payloads undecoded). Work
    done inside C calls made from C (`map` over the Message methods) shows under the
    Python function that started them."""
    handler = NoopHandler(topic, decode=False)
    runtime = ConsumerRuntime(settings, handler, serve_metrics=False)
    profiler = cProfile.Profile()
    thread = threading.Thread(target=profiler.runcall, args=(runtime.run,))
    thread.start()
    while handler.handled < expected:
        time.sleep(0.005)
    runtime.request_stop()
    thread.join(30)
    print("\nprofile: runtime thread, no-op handler, top functions by own time")
    print("(`consume` includes joining the group and waiting for fetches)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def profile_enrichment(tweets: Sequence[TweetCreated]) -> None:
    from starling.services.ingestion import Enricher

    enricher = Enricher()
    profiler = cProfile.Profile()
    profiler.enable()
    for tweet in tweets:
        encode(enricher.enrich(tweet))
    profiler.disable()
    print("\nprofile: enrich + encode, top functions by own time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def enrich_cpu_rate(tweets: Sequence[TweetCreated]) -> tuple[float, float]:
    """Enrich + encode per second on one core, and the full VADER analyzer's rate."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

    from starling.services.ingestion import Enricher

    enricher = Enricher()
    started = time.perf_counter()
    for tweet in tweets:
        encode(enricher.enrich(tweet))
    ours = len(tweets) / (time.perf_counter() - started)
    vader = SentimentIntensityAnalyzer()
    sample = tweets[:20_000]
    started = time.perf_counter()
    for tweet in sample:
        vader.polarity_scores(tweet.text)
    return ours, len(sample) / (time.perf_counter() - started)


def print_consume_table(
    rounds: int,
    batch_size: int,
    raw_untouched: Rate,
    raw: Rate,
    noop_raw: Rate,
    noop_raw_1000: Rate,
    noop: Rate,
) -> None:
    def consume_row(label: str, rate: Rate, target: str = "") -> None:
        print(
            f"{label:<50}{rate.wall:>12,.0f}/s{rate.wall / raw_untouched.wall:>8.0%}"
            f"{rate.wall / raw.wall:>8.0%}{1e9 / rate.cpu:>8,.0f} ns{rate.cpu / raw.cpu:>7.0%}"
            f"  {target}"
        )

    print(
        f"medians of {rounds} rounds; vs raw: (a) messages untouched, (b) each payload's"
        " length read; CPU/msg: the consuming thread's CPU time per message, then raw (b)'s"
        " over it"
    )
    print(f"{'measure':<50}{'rate':>14}{'vs (a)':>8}{'vs (b)':>8}{'CPU/msg':>11}{'vs (b)':>7}")
    consume_row("raw consume (a): messages untouched", raw_untouched)
    consume_row("raw consume (b): each payload's length read", raw)
    consume_row(f"runtime, no-op, undecoded, batches of {batch_size}", noop_raw, ">= 70% of raw")
    consume_row("runtime, no-op, undecoded, batches of 1000", noop_raw_1000)
    consume_row(f"runtime, no-op, decoded + validated, of {batch_size}", noop)
    print()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tweets", type=int, default=100_000)
    parser.add_argument("--latency-tweets", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rounds", type=int, default=5, help="raw vs no-op runtime rounds")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    generator, tweets = generate_tweets(args.tweets + args.latency_tweets)
    bulk, live = tweets[: args.tweets], tweets[args.tweets :]
    with KafkaCluster.start(nodes=1) as cluster, RedisServer.start() as redis_server:
        prefix = f"b{uuid.uuid4().hex[:6]}."
        spec = CATALOG.for_cluster(1)
        cluster.create_topics(
            (prefix + s.name, s.partitions, 1, s.kafka_config()) for s in spec.all_topics()
        )
        topic = prefix + TWEETS
        produce(cluster, topic, bulk)

        def settings(service: ServiceName, group: str, **overrides: Any) -> RuntimeSettings:
            return RuntimeSettings(
                starling_service=service,
                kafka_bootstrap_servers=cluster.bootstrap_servers,
                kafka_group_id=f"{group}-{uuid.uuid4().hex[:6]}",
                store_host="127.0.0.1",
                store_port=redis_server.port,
                metrics_port=0,
                starling_topic_prefix=prefix,
                **overrides,
            )

        make_room_for_batches(settings("ingestion", "gc").starling_batch_size)
        raw_untouched, raw, noop_raw, noop_raw_1000, noop = consume_rounds(
            cluster,
            topic,
            len(bulk),
            args.rounds,
            lambda **overrides: settings("ingestion", "noop", **overrides),
        )
        if args.profile:
            profile_noop_runtime(settings("ingestion", "noop-profile"), topic, len(bulk))
        ingest_settings = settings("ingestion", "ingest")
        ingestion = runtime_rate(
            ingest_settings,
            IngestionHandler(ingest_settings, settings=IngestionSettings(), fan_out=False),
            topic,
            len(bulk),
        )
        enrich_cpu, vader_cpu = enrich_cpu_rate(bulk)
        fan_out, fan_out_quiet, writes = fan_out_rates(redis_server.port, generator, bulk)
        redis_client = connect(host="127.0.0.1", port=redis_server.port)
        redis_client.flushdb()
        load_loadgen_graph(redis_client, generator)
        redis_client.close()
        # Its own topics: the latency run must start from an empty input, not the backlog.
        prefix = f"l{uuid.uuid4().hex[:6]}."
        cluster.create_topics(
            (prefix + s.name, s.partitions, 1, s.kafka_config()) for s in spec.all_topics()
        )
        p50, p99, worst, measured = latency_at_rate(
            cluster, settings("ingestion", "latency"), redis_server.port, live, args.rate
        )

    def row(label: str, rate: float, target: str = "", versus_raw: bool = True) -> None:
        ratio = f"{rate / raw.wall:.0%}" if versus_raw else ""
        print(f"{label:<50}{rate:>12,.0f}/s{ratio:>9}  {target}")

    print(f"\nconsumed {len(bulk):,} tweets (~{len(encode(bulk[0]))} B each) on a 1-node broker")
    batch_size = settings("ingestion", "any").starling_batch_size
    print_consume_table(args.rounds, batch_size, raw_untouched, raw, noop_raw, noop_raw_1000, noop)
    row("ingestion: validate+enrich+publish, no fan-out", ingestion, ">= 20,000/s per core")
    row("  enrich+encode only, one core, no Kafka", enrich_cpu, versus_raw=False)
    row("  full VADER analyzer alone, for comparison", vader_cpu, versus_raw=False)
    row(f"fan-out timeline writes ({writes:,}, pipelined)", fan_out, ">= 100,000/s", False)
    row("  the same without the live:tweets announcement", fan_out_quiet, versus_raw=False)
    print(
        f"tweet-to-timeline latency at {args.rate:,.0f} tweets/s ({measured:,} tweets,"
        f" first second excluded): p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"
        " (target p99 < 100 ms)"
    )
    if args.profile:
        profile_enrichment(bulk[:30_000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
