"""Resuming the gateway's SSE stream with `Last-Event-ID`, against a real broker and a
real store, over real HTTP with real tokens: a client reads live updates, goes away,
updates are published meanwhile (per-user ones through the store as the timelines and
notifier services publish them, followed accounts' tweets as ingestion announces them,
a trend through the `trends` topic), and on reconnecting with its last id it gets exactly
what it missed, in order, once, then the live ones; an id the pod does not know gets
`resync`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from starling.events import EventBase, Trend, encode, new_event
from starling.store.graph import load_graph
from starling.store.live import publish_new_tweets, publish_timeline
from starling.topics import TRENDS
from tests.integration.services.gateway_server import RunningGateway, start_gateway
from tests.integration.services.helpers import Deployment, new_prefix, wait_for
from tests.tokens import TokenIssuer

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

ALICE, BOB, XAVIER = 10, 20, 30

Event = tuple[str, str | None, Any]  # (event name, id, data)


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.start() as running:
        yield running


@pytest.fixture
def deployment(kafka: KafkaCluster, redis_server: RedisServer) -> Deployment:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


class SseClient:
    """One SSE connection read in the test's own thread: `next()` returns the next event
    (blocks with only an `id:` line come back as ("", id, None), as the position)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: Iterator[str] = response.iter_lines()

    def next(self, within_s: float = 20.0) -> Event:
        # Heartbeats (every second here) keep lines coming, so a missing event fails the
        # test within `within_s` instead of hanging it.
        deadline = time.monotonic() + within_s
        block: dict[str, str] = {}
        for line in self._lines:
            if time.monotonic() > deadline:
                raise AssertionError(f"no event within {within_s} s")
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                block[name] = value
                continue
            if "event" in block:
                return block["event"], block.get("id"), json.loads(block["data"])
            if "id" in block:
                return "", block["id"], None
            block = {}
        raise AssertionError("the stream ended")

    def events(self, count: int) -> list[Event]:
        return [self.next() for _ in range(count)]


@contextlib.contextmanager
def connect(
    running: RunningGateway,
    issuer: TokenIssuer,
    user: int,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Iterator[SseClient]:
    """`user`'s stream, authenticated by the session cookie as EventSource does."""
    url = f"{running.url}/v1/users/{user}/stream{query}"
    cookie = {"Cookie": f"starling_session={issuer.mint(user)}"}
    with httpx.stream(
        "GET", url, headers={**cookie, **(headers or {})}, timeout=httpx.Timeout(5, read=30)
    ) as response:
        assert response.status_code == 200, response.read()
        yield SseClient(response)


def produce_trend(producer: Any, deployment: Deployment, hashtag: str) -> None:
    now = datetime.now(UTC)
    trend: EventBase = new_event(
        Trend,
        hashtag=hashtag,
        window_start=now - timedelta(minutes=5),
        window_end=now,
        count=40,
        expected=3.5,
        score=9.1,
        rank=1,
    )
    producer.produce(deployment.topic(TRENDS), encode(trend), trend.partition_key())
    assert producer.flush(10) == 0


def timeline(tweet_ids: list[int]) -> dict[str, Any]:
    return {"kind": "timeline", "tweet_ids": tweet_ids}


def test_a_reconnect_with_the_last_id_gets_exactly_the_missed_updates(
    deployment: Deployment, kafka: KafkaCluster, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

    load_graph(redis_client, {XAVIER: [ALICE]})  # Alice follows Xavier
    with start_gateway(deployment, issuer, heartbeat_s=1.0) as running:
        gateway = running.gateway
        assert gateway.trend_feed is not None and gateway.live_feed is not None
        assert gateway.trend_feed.ready.wait(20) and gateway.live_feed.ready.wait(20)
        # Bob stays connected throughout: once his stream has an update, everything
        # published before it on the same feed has reached the hub.
        with connect(running, issuer, BOB) as bob:
            assert bob.next()[0] == ""  # his position
            with connect(running, issuer, ALICE) as alice:
                position = alice.next()
                assert position[0] == "" and position[1] is not None
                wait_for(lambda: gateway.follows.following(ALICE) == {XAVIER}, 10, "follows")
                # The trends feed reads from the end: produce until one arrives, then let
                # any other warm-up trend land before Alice's timeline updates.
                deadline = time.monotonic() + 30
                while not gateway.hub.replay.trends.frames and time.monotonic() < deadline:
                    produce_trend(producer, deployment, "warmup")
                    time.sleep(0.5)
                time.sleep(1.5)
                publish_timeline(redis_client, ALICE, [1])
                publish_timeline(redis_client, ALICE, [2])
                seen = [event for event in until(alice, timeline([2])) if event[0] != "trend"]
                assert [data for _name, _id, data in seen] == [timeline([1]), timeline([2])]
                last_id = seen[-1][1]
                assert last_id is not None
            # Alice is gone (her connection closed); the hub notices.
            wait_for(lambda: not gateway.hub.wants(ALICE), 10, "alice's stream to close")

            # While Alice is away: a trend, her own updates, a followed account's tweet.
            produce_trend(producer, deployment, "away")
            until(bob, lambda event: event[0] == "trend" and event[2]["hashtag"] == "away")
            publish_timeline(redis_client, ALICE, [3])
            publish_new_tweets(redis_client, [(4, XAVIER)])
            publish_timeline(redis_client, ALICE, [5])
            publish_timeline(redis_client, BOB, [101])
            until(bob, timeline([101]))  # so all of the above reached the hub

            with connect(running, issuer, ALICE, headers={"Last-Event-ID": last_id}) as alice:
                missed = alice.events(4)
                publish_timeline(redis_client, ALICE, [6])
                live = alice.next()
            # Exactly the missed ones, in order, then the live one: nothing lost, nothing twice.
            assert (missed[0][0], missed[0][2]["hashtag"]) == ("trend", "away")
            assert [(name, data) for name, _id, data in [*missed[1:], live]] == [
                ("timeline", timeline([3])),
                ("timeline", timeline([4])),
                ("timeline", timeline([5])),
                ("timeline", timeline([6])),
            ]
            ids = [seq(event_id) for _name, event_id, _ in [*missed, live]]
            assert ids == sorted(set(ids)) and ids[0] > seq(last_id)

            # The query parameter (a new EventSource cannot set the header) works the same,
            # here from the middle of the missed ones.
            middle = missed[2][1]
            assert middle is not None
            with connect(running, issuer, ALICE, query=f"?last_event_id={middle}") as alice:
                again = alice.events(2)
                publish_timeline(redis_client, ALICE, [7])
                again.append(alice.next())
            assert [data for _n, _i, data in again] == [timeline([5]), timeline([6]), timeline([7])]
            metrics = httpx.get(running.metrics_url + "/metrics").text
            assert 'starling_gateway_stream_resumes_total{outcome="replayed"} 2.0' in metrics


def seq(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rpartition("-")[2])


def until(client: SseClient, wanted: Any) -> list[Event]:
    """Events read up to and including the first that is `wanted` (data equal to it, or a
    predicate on the event)."""
    read: list[Event] = []
    while True:
        event = client.next()
        read.append(event)
        if wanted(event) if callable(wanted) else event[2] == wanted:
            return read


def test_an_unknown_or_foreign_id_gets_resync(deployment: Deployment, issuer: TokenIssuer) -> None:
    with start_gateway(deployment, issuer, heartbeat_s=1.0) as running:
        for last in ("0badc0de-7", "not-an-id"):
            with connect(running, issuer, ALICE, headers={"Last-Event-ID": last}) as alice:
                name, event_id, data = alice.next()
            assert (name, data["reason"]) == ("resync", "unknown_id")
            assert event_id is not None and event_id.startswith(gateway_epoch(running))
        # An id of this process, from the future of this stream, is unknown too.
        with connect(
            running, issuer, ALICE, query=f"?last_event_id={gateway_epoch(running)}-999999"
        ) as alice:
            assert alice.next()[0] == "resync"
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert 'starling_gateway_stream_resumes_total{outcome="unknown_id"} 3.0' in metrics


def gateway_epoch(running: RunningGateway) -> str:
    return running.gateway.hub.replay.epoch
