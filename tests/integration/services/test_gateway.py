"""The gateway against a real broker and a real Redis: events in (acknowledged, keyed,
validated, bounded when the broker is gone), reads out, and the SSE stream fed by the
real trends topic and by the real timelines and notifier services. Every request proves
its user with a real token from a real issuer serving its JWKS on 127.0.0.1
(tests/tokens.py); sign-out (revocation in the store), blocks, stream caps, header mode
and oversized heads are checked against the served gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from starling.events import (
    EventBase,
    InteractionAction,
    Notification,
    NotificationKind,
    Platform,
    Recommendation,
    RecommendationKind,
    RecommendedItem,
    Trend,
    TweetCreated,
    TweetEnriched,
    UserInteraction,
    decode,
    encode,
    new_event,
)
from starling.gateway.app import Gateway
from starling.gateway.follows import FollowingLoader
from starling.gateway.settings import GatewaySettings
from starling.harness._process import free_ports
from starling.runtime.config import RuntimeSettings
from starling.services.ingestion import IngestionHandler, IngestionSettings
from starling.services.notifier import NotifierHandler, NotifierSettings
from starling.services.timelines import TimelinesHandler, TimelinesSettings
from starling.store import keys
from starling.store.graph import apply_interaction, load_graph
from starling.store.trends import TrendEntry, TrendStore
from starling.topics import NOTIFICATIONS, RECOMMENDATIONS, TRENDS, TWEETS
from tests.integration.services.gateway_server import RunningGateway, start_gateway
from tests.integration.services.helpers import (
    Deployment,
    ThreadedRuntime,
    new_prefix,
    read_topic,
    service_command,
    wait_for,
)
from tests.integration.services.running_service import raw_request
from tests.tokens import TokenIssuer

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.start() as running:
        yield running


def auth(issuer: TokenIssuer, user: int, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(user, **claims)}"}


@pytest.fixture
def deployment(kafka: KafkaCluster, redis_server: RedisServer) -> Deployment:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


def tweet_body(author: int, tweet_id: int, **extra: Any) -> dict[str, Any]:
    event = new_event(
        TweetCreated, tweet_id=tweet_id, author_id=author, text="hello #x", platform=Platform.IOS
    )
    return {**json.loads(encode(event)), **extra}


def test_post_is_acknowledged_keyed_and_validated(
    deployment: Deployment, kafka: KafkaCluster, issuer: TokenIssuer
) -> None:
    seven = auth(issuer, 7)
    with (
        start_gateway(deployment, issuer) as running,
        httpx.Client(base_url=running.url) as http,
    ):
        wait_for(running.gateway.health.ready, 20, "readiness")
        body = tweet_body(author=7, tweet_id=4242, unknown_extra="dropped")
        started = time.monotonic()
        accepted = http.post("/v1/events", json=body, headers=seven)
        elapsed = time.monotonic() - started
        assert accepted.status_code == 202, accepted.text
        answer = accepted.json()
        assert answer["event_id"] == body["event_id"]
        assert answer["topic"] == deployment.topic(TWEETS) and answer["type"] == "tweet.created"

        # A login as clients used to post it (schema v1): refused now, whatever its shape.
        login = json.dumps(
            {
                "type": "user.login",
                "event_id": str(uuid.uuid4()),
                "schema_version": 1,
                "event_time": "2026-11-27T10:00:00Z",
                "user_id": 7,
                "success": True,
                "ip": "10.0.0.1",
                "country": "NL",
                "device_id": "d1",
                "platform": "web",
            }
        ).encode()
        json_as_seven = {**seven, "Content-Type": "application/json"}
        refused = [
            http.post("/v1/events", content=login, headers=json_as_seven),
            http.post("/v1/events", content=b"{", headers=json_as_seven),
            http.post("/v1/events", json=tweet_body(7, 1, text=""), headers=seven),
            http.post("/v1/events", json=tweet_body(7, 2, type="trend"), headers=seven),
            http.post("/v1/events", json=tweet_body(8, 3), headers=seven),
            http.post("/v1/events", content=b"x" * 70_000, headers=json_as_seven),
            http.post("/v1/events", content=login, headers=seven),
            http.post("/v1/events", json=tweet_body(7, 4)),
        ]
        assert [(r.status_code, r.json()["reason"]) for r in refused] == [
            # Logins are the identity service's facts, never a client's claim.
            (422, "wrong_type"),
            (400, "malformed"),
            (400, "invalid"),
            (422, "wrong_type"),
            (403, "not_your_resource"),
            (413, "too_large"),
            (415, "unsupported_media_type"),
            (401, "missing"),
        ]
        assert "identity service" in refused[0].json()["message"]
        assert refused[2].json()["field"] == "$.text"
        metrics = httpx.get(running.metrics_url + "/metrics").text
        tweets_topic = deployment.topic(TWEETS)
        assert f'starling_gateway_events_accepted_total{{topic="{tweets_topic}"}} 1.0' in metrics

    messages = read_topic(kafka, deployment.topic(TWEETS), expected=1, timeout=20)
    # Exactly the accepted tweet: nothing refused reached the topic.
    assert len(messages) == 1
    message = messages[0]
    assert message.key() == b"4242"
    assert (message.partition(), message.offset()) == (answer["partition"], answer["offset"])
    produced = decode(message.value())
    assert isinstance(produced, TweetCreated) and str(produced.event_id) == body["event_id"]
    assert b"unknown_extra" not in message.value()
    print(f"POST -> acknowledged 202 in {elapsed * 1000:.1f} ms")


def test_unreachable_broker_is_503_within_the_bound(
    kafka: KafkaCluster, redis_server: RedisServer, issuer: TokenIssuer
) -> None:
    # A port nobody listens on: the broker is unreachable from the start.
    closed_port = free_ports(1)[0]
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.overrides["kafka_bootstrap_servers"] = f"127.0.0.1:{closed_port}"
    with (
        start_gateway(deployment, issuer, ack_timeout_s=2.0) as running,
        httpx.Client(base_url=running.url, timeout=30) as http,
    ):
        headers = auth(issuer, 7)
        started = time.monotonic()
        response = http.post("/v1/events", json=tweet_body(7, 5), headers=headers)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "not_acknowledged"
        assert "retry with the same event_id" in response.json()["message"]
        assert elapsed < 4.0, f"503 took {elapsed:.1f} s"
        assert not running.gateway.health.ready()
        assert httpx.get(running.metrics_url + "/readyz").status_code == 503
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert "starling_gateway_events_accepted_total{" not in metrics
        assert 'starling_gateway_events_rejected_total{reason="not_acknowledged"} 1.0' in metrics
    print(f"unreachable broker -> 503 in {elapsed:.2f} s (bound 2 s)")


@dataclass
class Stream:
    """An SSE client in a thread, collecting (event, id, data) triples. It sends its
    token in the session cookie, as a browser's EventSource does."""

    url: str
    user: int
    token: str
    events: list[tuple[str, str | None, Any]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Stream:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.connected.wait(10), "the stream did not connect"
        return self

    def _run(self) -> None:
        headers = {"Cookie": f"starling_session={self.token}"}
        url = f"{self.url}/v1/users/{self.user}/stream"
        event: dict[str, str] = {}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET", url, headers=headers, timeout=httpx.Timeout(5, read=60)
            ) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith(":"):
                    self.connected.set()
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    event[name] = value
                    continue
                if "event" in event:
                    data = json.loads(event["data"])
                    self.events.append((event["event"], event.get("id"), data))
                event = {}
        self.closed.set()

    def of(self, kind: str) -> list[Any]:
        return [data for name, _id, data in self.events if name == kind]


def test_stream_pushes_trends_to_all_and_user_updates_to_their_user(
    deployment: Deployment, kafka: KafkaCluster, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

    def produce(topic: str, event: EventBase) -> None:
        producer.produce(deployment.topic(topic), encode(event), event.partition_key())
        assert producer.flush(10) == 0

    timelines_settings = deployment.settings("timelines")
    notifier_settings = deployment.settings("notifier")
    services = [
        ThreadedRuntime(
            timelines_settings,
            TimelinesHandler(timelines_settings, settings=TimelinesSettings()),
            serve_metrics=False,
        ).start(),
        ThreadedRuntime(
            notifier_settings,
            NotifierHandler(notifier_settings, settings=NotifierSettings()),
            serve_metrics=False,
        ).start(),
    ]
    try:
        with start_gateway(deployment, issuer, heartbeat_s=1.0) as running:
            gateway = running.gateway
            assert gateway.trend_feed is not None and gateway.live_feed is not None
            assert gateway.trend_feed.ready.wait(20) and gateway.live_feed.ready.wait(20)
            alice = Stream(running.url, 10, issuer.mint(10)).start()
            bob = Stream(running.url, 20, issuer.mint(20)).start()

            # Trends: from the end of the topic, so produce until one arrives (the first may
            # land before the consumer resolved "the end").
            now = datetime.now(UTC)
            trend_ids: list[str] = []
            deadline = time.monotonic() + 30
            while not alice.of("trend") and time.monotonic() < deadline:
                trend = new_event(
                    Trend,
                    hashtag="starling",
                    window_start=now - timedelta(minutes=5),
                    window_end=now,
                    count=40,
                    expected=3.5,
                    score=9.1,
                    rank=1,
                )
                trend_ids.append(str(trend.event_id))
                produce(TRENDS, trend)
                time.sleep(0.5)
            wait_for(lambda: bool(bob.of("trend")), 10, "bob's trend")
            assert alice.of("trend")[0]["hashtag"] == "starling"

            # Alice's timeline, through the real timelines service.
            enriched = new_event(
                TweetEnriched,
                tweet_id=555,
                author_id=30,
                text="hi",
                hashtags=[],
                mentions=[],
                lang="en",
                sentiment=0.0,
                source_event_id=uuid.uuid4(),
            )
            redis_client.set(keys.tweet(555), encode(enriched))
            produce(
                RECOMMENDATIONS,
                new_event(
                    Recommendation,
                    user_id=10,
                    kind=RecommendationKind.TWEETS,
                    items=[RecommendedItem(item_id=555, score=1.0)],
                    model="test",
                ),
            )
            wait_for(lambda: bool(alice.of("timeline")), 30, "alice's timeline update")
            assert alice.of("timeline")[0] == {"kind": "timeline", "tweet_ids": [555]}

            # Alice's notification, through the real notifier.
            produce(
                NOTIFICATIONS,
                new_event(
                    Notification,
                    recipient_id=10,
                    kind=NotificationKind.MENTION,
                    source_event_id=uuid.uuid4(),
                    actor_id=11,
                    tweet_id=555,
                ),
            )
            wait_for(lambda: bool(alice.of("notification")), 30, "alice's notification")
            entry = alice.of("notification")[0]["entry"]
            assert (entry["kind"], entry["actor_id"]) == ("mention", 11)
            # Every pushed frame carries a resumable id (`<pod epoch>-<seq>`).
            epoch = gateway.hub.replay.epoch
            assert all(
                event_id is not None and event_id.startswith(f"{epoch}-")
                for name, event_id, _ in alice.events
                if name in ("notification", "timeline", "trend")
            )
            time.sleep(1.5)  # a heartbeat interval: anything misrouted would have arrived
            assert bob.of("timeline") == [] and bob.of("notification") == []

            check_reads(running, issuer, redis_client, enriched, entry["id"], now)
        # Stopping the gateway ends both streams with a close event.
        assert alice.closed.wait(10) and bob.closed.wait(10)
        assert alice.events[-1][0] == "close" and alice.events[-1][2]["reason"] == "shutdown"
    finally:
        for service in services:
            service.stop()


def check_reads(
    running: RunningGateway,
    issuer: TokenIssuer,
    redis_client: redis.Redis,
    enriched: TweetEnriched,
    notification_id: str,
    now: datetime,
) -> None:
    """The state the stream announced, through the read API."""
    with httpx.Client(base_url=running.url) as http:
        alice = auth(issuer, 10)
        timeline = http.get("/v1/users/10/timeline", headers=alice).json()
        assert timeline["tweets"] == [{"tweet_id": 555, "tweet": json.loads(encode(enriched))}]
        inbox = http.get("/v1/users/10/notifications", headers=alice).json()
        assert [n["id"] for n in inbox["notifications"]] == [notification_id]
        other = http.get("/v1/users/20/timeline", headers=auth(issuer, 20)).json()
        assert other["tweets"] == []
        # Bob's token on Alice's data, and Alice's on Bob's stream: refused, nothing read.
        for path in ("/v1/users/10/timeline", "/v1/users/10/notifications"):
            response = http.get(path, headers=auth(issuer, 20))
            assert (response.status_code, response.json()["reason"]) == (403, "not_your_resource")
        response = http.get("/v1/users/20/stream", headers=alice)
        assert (response.status_code, response.json()["reason"]) == (403, "not_your_resource")
        assert http.get("/v1/trends").json() == {"trends": [], "current": None}
        # Trends as the trends service closes a window.
        window = int(now.timestamp()) // 300 * 300
        TrendStore(redis_client, retention_s=3600).close(
            window, [TrendEntry("starling", 40, 3.5, 9.1, 1, window, window + 300)]
        )
        trends = http.get("/v1/trends").json()["trends"]
        assert [(t["hashtag"], t["rank"]) for t in trends] == [("starling", 1)]
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert "starling_gateway_streams 2.0" in metrics


def test_starling_run_gateway_process(deployment: Deployment, issuer: TokenIssuer) -> None:
    http_port, metrics_port = free_ports(2)
    env = deployment.env(
        "gateway",
        HTTP_PORT=str(http_port),
        METRICS_PORT=str(metrics_port),
        STARLING_GATEWAY_ISSUER=issuer.issuer,
        STARLING_GATEWAY_AUDIENCE=issuer.audience,
        STARLING_SHUTDOWN_TIMEOUT_S="5",
        LOG_LEVEL="DEBUG",
    )
    token = issuer.mint(3)
    output = ""
    process = subprocess.Popen(
        service_command("gateway"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        metrics = f"http://127.0.0.1:{metrics_port}"

        def ready() -> bool:
            try:
                return httpx.get(metrics + "/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "/readyz of `starling run gateway`")
        assert httpx.get(metrics + "/healthz").status_code == 200
        url = f"http://127.0.0.1:{http_port}"
        headers = {"Authorization": f"Bearer {token}"}
        assert (
            httpx.post(url + "/v1/events", json=tweet_body(3, 77), headers=headers).status_code
            == 202
        )
        # Refusals are logged by reason at most, never with the token.
        assert (
            httpx.get(
                url + "/v1/users/3/timeline", headers={"Authorization": f"Bearer {token[:-4]}"}
            ).status_code
            == 401
        )
        stream = Stream(url, 3, token).start()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert stream.closed.wait(5)
        assert stream.events[-1][0] == "close"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        output = process.stdout.read().decode() if process.stdout else ""
        print(output[-3000:])
    assert "gateway: serving" in output  # the log was captured: the next check means something
    signature = token.rsplit(".", 1)[1]
    assert token not in output and signature not in output and token[:40] not in output


def test_stream_pushes_followed_accounts_tweets_fanned_out_by_ingestion(
    deployment: Deployment, kafka: KafkaCluster, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    """A tweet through the real ingestion service reaches, live, the streams of the
    author's connected followers (and the author), not a follower who muted the author
    nor a non-follower; a follow made while connected takes effect within the refresh."""
    from confluent_kafka import Producer

    alice, bob, carol, xavier, yves = 10, 20, 25, 30, 40
    # Alice and Bob follow Xavier, but Bob muted him; Carol follows nobody.
    load_graph(redis_client, {xavier: [alice, bob]})
    redis_client.sadd(keys.muted(bob), xavier)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    produced_at: dict[int, float] = {}

    def tweet(author: int, tweet_id: int) -> None:
        event = new_event(
            TweetCreated, tweet_id=tweet_id, author_id=author, text="news", platform=Platform.WEB
        )
        producer.produce(deployment.topic(TWEETS), encode(event), event.partition_key())
        assert producer.flush(10) == 0
        produced_at[tweet_id] = time.monotonic()

    settings = deployment.settings("ingestion")
    ingestion = ThreadedRuntime(
        settings, IngestionHandler(settings, settings=IngestionSettings()), serve_metrics=False
    ).start()
    try:
        with start_gateway(deployment, issuer, heartbeat_s=1.0, follow_refresh_s=0.5) as running:
            gateway = running.gateway
            assert gateway.live_feed is not None and gateway.live_feed.ready.wait(20)
            streams = {
                user: Stream(running.url, user, issuer.mint(user)).start()
                for user in (alice, bob, carol, xavier)
            }
            wait_for(lambda: gateway.follows.following(alice) == {xavier}, 10, "alice's follows")
            wait_for(lambda: gateway.follows.connected(bob), 10, "bob's stream")
            # Muted accounts are left out when loading: Bob's followed set is empty.
            assert gateway.follows.following(bob) == frozenset()

            tweet(xavier, 7001)
            wait_for(lambda: bool(streams[alice].of("timeline")), 60, "alice's live tweet")
            latency = time.monotonic() - produced_at[7001]
            assert streams[alice].of("timeline") == [{"kind": "timeline", "tweet_ids": [7001]}]
            wait_for(lambda: bool(streams[xavier].of("timeline")), 10, "the author's own")
            assert streams[xavier].of("timeline") == [{"kind": "timeline", "tweet_ids": [7001]}]
            # The live event announces what the store holds.
            assert redis_client.zscore(keys.timeline(alice), 7001) is not None
            # Ingestion's fan-out does not filter mutes: the tweet is in Bob's timeline,
            # only the live push leaves it out.
            assert redis_client.zscore(keys.timeline(bob), 7001) is not None
            time.sleep(1.5)  # a heartbeat interval: anything misrouted would have arrived
            assert streams[bob].of("timeline") == [] and streams[carol].of("timeline") == []

            # Alice follows Yves while connected (as the notifier records a follow).
            took = follow_while_connected(running, redis_client, alice, yves)
            tweet(yves, 7002)
            wait_for(lambda: len(streams[alice].of("timeline")) == 2, 30, "yves's tweet")
            assert streams[alice].of("timeline")[1] == {"kind": "timeline", "tweet_ids": [7002]}
            assert streams[bob].of("timeline") == [] and streams[carol].of("timeline") == []
            metrics = httpx.get(running.metrics_url + "/metrics").text
            assert 'starling_gateway_updates_pushed_total{kind="timeline"} 3.0' in metrics
            assert "starling_gateway_follow_entries 2.0" in metrics
        for stream in streams.values():
            assert stream.closed.wait(10)
        # Every stream closed: nothing is left in the routing index, no refresh runs.
        assert gateway.follows.entries == 0 and not gateway._follow_tasks
        print(
            f"tweet -> ingestion -> follower's SSE stream in {latency * 1000:.0f} ms"
            f" (first tweet, includes the consumer group join); follow seen in {took:.2f} s"
        )
    finally:
        ingestion.stop()
    assert ingestion.error is None


def follow_while_connected(
    running: RunningGateway, redis_client: redis.Redis, follower: int, followee: int
) -> float:
    """Seconds until the gateway's index has a follow made now (refresh is 0.5 s)."""
    pipe = redis_client.pipeline(transaction=False)
    apply_interaction(pipe, InteractionAction.FOLLOW, follower, followee)
    pipe.execute()
    followed_at = time.monotonic()
    follows = running.gateway.follows
    wait_for(lambda: followee in follows.following(follower), 5, "the follow refresh")
    took = time.monotonic() - followed_at
    assert took < 0.5 + 1.0, f"the follow took {took:.2f} s with a 0.5 s refresh"
    return took


def test_following_loader_is_bounded_and_leaves_out_blocked_muted_and_blockers(
    redis_client: redis.Redis,
) -> None:
    user = 1
    redis_client.sadd(keys.following(user), *range(100, 110))
    redis_client.sadd(keys.blocked(user), 101, 999)
    redis_client.sadd(keys.muted(user), 102)
    # 103 blocked the user: their tweets are hidden from the user, live as on the route.
    redis_client.sadd(keys.blocked(103), user)
    assert sorted(FollowingLoader(redis_client, 50)(user)) == [100, *range(104, 110)]
    capped = FollowingLoader(redis_client, 4)(user)
    assert len(capped) <= 4 and len(set(capped)) == len(capped)
    assert set(capped) <= set(range(100, 110)) - {101, 102, 103}
    assert FollowingLoader(redis_client, 50)(2) == []


# ---------------------------------------------------------------- timeline visibility

READER, MUTED, BLOCKED, SHOWN, BLOCKER = 1, 100, 200, 300, 400


@pytest.fixture
def timeline_http(
    redis_server: RedisServer, redis_client: redis.Redis, issuer: TokenIssuer
) -> Iterator[Callable[..., dict[str, Any]]]:
    """GET a user's timeline from a gateway app on the real Redis (no lifespan, so no
    Kafka: the read route only talks to the store), as the user themselves."""
    runtime = RuntimeSettings(
        starling_service="gateway",
        kafka_bootstrap_servers="127.0.0.1:1",
        store_host=redis_server.host,
        store_port=redis_server.port,
    )
    gateway = Gateway(
        runtime,
        GatewaySettings(**issuer.gateway_settings(timeline_scan_factor=3)),
        producer_overrides={"log_level": 0},
    )

    def get(user: int, **query: int) -> dict[str, Any]:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=gateway.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.get(
                    f"/v1/users/{user}/timeline", params=query, headers=auth(issuer, user)
                )

        response = asyncio.run(send())
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    yield get
    gateway.store.close()


def store_tweets(
    redis_client: redis.Redis, reader: int, authored: dict[int, int], bodies: bool = True
) -> None:
    """Put tweet id -> author in the reader's timeline, with enriched bodies."""
    pipe = redis_client.pipeline(transaction=False)
    for tweet_id, author in authored.items():
        pipe.zadd(keys.timeline(reader), {str(tweet_id): tweet_id})
        if bodies:
            enriched = new_event(
                TweetEnriched,
                tweet_id=tweet_id,
                author_id=author,
                text=f'say "author_id": {BLOCKED}',  # the author is read from the field
                hashtags=[],
                mentions=[],
                lang="en",
                sentiment=0.0,
                source_event_id=uuid.uuid4(),
            )
            pipe.set(keys.tweet(tweet_id), encode(enriched))
    pipe.execute()


def ids_of(page: dict[str, Any]) -> list[int]:
    return [entry["tweet_id"] for entry in page["tweets"]]


def read_all(get: Callable[..., dict[str, Any]], user: int, limit: int) -> list[dict[str, Any]]:
    """Every page from the newest to the end, following next_before."""
    pages = [get(user, limit=limit)]
    while pages[-1]["next_before"] is not None:
        assert len(pages) < 1000, "paging does not end"
        pages.append(get(user, limit=limit, before=pages[-1]["next_before"]))
    return pages


def test_timeline_hides_blocked_muted_and_blocking_authors_at_read_time(
    redis_client: redis.Redis, timeline_http: Callable[..., dict[str, Any]]
) -> None:
    # Oldest first: one tweet each by every kind of author, and the reader's own.
    store_tweets(
        redis_client,
        READER,
        {11: MUTED, 12: BLOCKED, 13: SHOWN, 14: BLOCKER, 15: READER, 16: MUTED, 17: SHOWN},
    )
    redis_client.sadd(keys.muted(READER), MUTED)
    redis_client.sadd(keys.blocked(READER), BLOCKED, 999)
    # The blocker blocked the reader: their tweets stay out of the reader's timeline.
    redis_client.sadd(keys.blocked(BLOCKER), READER)
    # Shown blocked someone else: that changes nothing for the reader.
    redis_client.sadd(keys.blocked(SHOWN), 3)

    page = timeline_http(READER)
    assert ids_of(page) == [17, 15, 13]
    assert [entry["tweet"]["author_id"] for entry in page["tweets"]] == [SHOWN, READER, SHOWN]
    assert page["next_before"] is None

    # A read-time filter: unmuting shows the muted account's tweets again, nothing was lost.
    redis_client.srem(keys.muted(READER), MUTED)
    assert ids_of(timeline_http(READER)) == [17, 16, 15, 13, 11]
    redis_client.srem(keys.blocked(BLOCKER), READER)
    assert ids_of(timeline_http(READER)) == [17, 16, 15, 14, 13, 11]
    # Another reader of the same tweets is not affected by the first one's blocks, but
    # is by Shown's block of them.
    store_tweets(redis_client, 3, {12: BLOCKED, 13: SHOWN}, bodies=False)
    assert ids_of(timeline_http(3)) == [12]


def test_tweets_whose_body_expired_are_kept_without_a_body(
    redis_client: redis.Redis, timeline_http: Callable[..., dict[str, Any]]
) -> None:
    store_tweets(redis_client, READER, {21: MUTED, 22: SHOWN, 23: MUTED})
    redis_client.sadd(keys.muted(READER), MUTED)
    redis_client.delete(keys.tweet(23), keys.tweet(22))
    # 23's author is unknown once its body is gone: it is served, as `null`, like 22.
    page = timeline_http(READER)
    assert page["tweets"] == [{"tweet_id": 23, "tweet": None}, {"tweet_id": 22, "tweet": None}]


def test_paging_fills_pages_past_hidden_tweets_and_never_skips_or_repeats(
    redis_client: redis.Redis, timeline_http: Callable[..., dict[str, Any]]
) -> None:
    # 2 of every 3 tweets hidden: a page of 5 needs 15 scanned, exactly the 3x budget.
    authored = {100 + i: (SHOWN if i % 3 == 0 else MUTED) for i in range(60)}
    store_tweets(redis_client, READER, authored)
    redis_client.sadd(keys.muted(READER), MUTED)
    visible = sorted((t for t, a in authored.items() if a == SHOWN), reverse=True)

    first = timeline_http(READER, limit=5)
    assert ids_of(first) == visible[:5]
    pages = read_all(timeline_http, READER, limit=5)
    assert [len(ids_of(page)) for page in pages] == [5, 5, 5, 5]
    assert [t for page in pages for t in ids_of(page)] == visible

    # Sparser: 1 of 20 visible, so a 3x budget (12 entries) cannot fill a page of 4, and
    # some pages hold none. They come back short (or empty) with a cursor, and following
    # it still yields every visible tweet once.
    redis_client.flushdb()
    authored = {1000 + i: (SHOWN if i % 20 == 0 else BLOCKED) for i in range(100)}
    store_tweets(redis_client, READER, authored)
    redis_client.sadd(keys.blocked(READER), BLOCKED)
    visible = sorted((t for t, a in authored.items() if a == SHOWN), reverse=True)
    pages = read_all(timeline_http, READER, limit=4)
    assert [t for page in pages for t in ids_of(page)] == visible
    assert all(len(ids_of(page)) <= 4 for page in pages)
    assert any(not page["tweets"] and page["next_before"] is not None for page in pages)
    # Each request scanned at most 3 x 4 entries: 100 entries take at least 9 requests.
    assert len(pages) >= 9


def test_paging_matches_a_reference_filter_over_random_timelines(
    redis_client: redis.Redis, timeline_http: Callable[..., dict[str, Any]]
) -> None:
    rng = random.Random(20261127)
    for round_ in range(5):
        redis_client.flushdb()
        authors = list(range(500, 520))
        muted = set(rng.sample(authors, 5))
        blocked = set(rng.sample(authors, 5))
        blockers = set(rng.sample(authors, 3))
        authored = {tweet_id: rng.choice(authors) for tweet_id in rng.sample(range(1, 10_000), 150)}
        expired = set(rng.sample(sorted(authored), 10))
        store_tweets(redis_client, READER, authored)
        redis_client.delete(*(keys.tweet(t) for t in expired))
        redis_client.sadd(keys.muted(READER), *muted)
        redis_client.sadd(keys.blocked(READER), *blocked)
        for blocker in blockers:
            redis_client.sadd(keys.blocked(blocker), READER)
        hidden = muted | blocked | blockers
        expected = sorted(
            (t for t, a in authored.items() if t in expired or a not in hidden), reverse=True
        )
        limit = rng.randint(1, 12)
        pages = read_all(timeline_http, READER, limit=limit)
        assert [t for page in pages for t in ids_of(page)] == expected, (round_, limit)
        assert all(len(ids_of(page)) <= limit for page in pages)


def test_paging_is_exact_for_ids_that_tie_as_scores(
    redis_client: redis.Redis, timeline_http: Callable[..., dict[str, Any]]
) -> None:
    # Past 2^53 neighbouring ids are the same double: the score alone cannot page them.
    base = 2**60
    authored = {base + i: (SHOWN if i % 2 else MUTED) for i in range(1, 21)}
    assert len({float(t) for t in authored}) < len(authored)
    store_tweets(redis_client, READER, authored)
    redis_client.sadd(keys.muted(READER), MUTED)
    visible = sorted((t for t, a in authored.items() if a == SHOWN), reverse=True)
    pages = read_all(timeline_http, READER, limit=3)
    assert [t for page in pages for t in ids_of(page)] == visible
    assert [len(ids_of(page)) for page in pages] == [3, 3, 3, 1]


# ---------------------------------------------------------------- identity and limits


def test_signed_out_session_is_refused_within_the_recheck_interval(
    redis_server: RedisServer, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    """Sign-out as the identity service records it (the revocation key in the real store)
    reaches a token the gateway has cached as verified within the recheck interval."""
    runtime = RuntimeSettings(
        starling_service="gateway",
        kafka_bootstrap_servers="127.0.0.1:1",
        store_host=redis_server.host,
        store_port=redis_server.port,
    )
    settings = GatewaySettings(
        **issuer.gateway_settings(revocation="store", revocation_recheck_s=0.5)
    )
    gateway = Gateway(runtime, settings, producer_overrides={"log_level": 0})
    signed_out, other = issuer.session(), issuer.session()
    token = issuer.mint(7, session=signed_out)
    same_user_other_device = issuer.mint(7, session=other)

    async def scenario() -> tuple[float, int]:
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:

            async def read(bearer: str) -> httpx.Response:
                headers = {"Authorization": f"Bearer {bearer}"}
                return await http.get("/v1/users/7/timeline", headers=headers)

            assert (await read(token)).status_code == 200
            assert (await read(same_user_other_device)).status_code == 200
            ttl = 600
            redis_client.set(keys.revoked_session(signed_out), b"1", ex=ttl)
            revoked_at = time.monotonic()
            answered_ok = 0
            while True:
                response = await read(token)
                if response.status_code == 401:
                    break
                assert response.status_code == 200
                answered_ok += 1
                assert time.monotonic() - revoked_at < 2.0, "sign-out not honoured"
                await asyncio.sleep(0.02)
            took = time.monotonic() - revoked_at
            assert response.json()["reason"] == "revoked"
            assert 'error_description="revoked"' in response.headers["www-authenticate"]
            # Refused from now on, cached or freshly presented; the other session is not.
            assert (await read(token)).json()["reason"] == "revoked"
            assert (await read(same_user_other_device)).status_code == 200
            return took, answered_ok

    try:
        took, answered_ok = asyncio.run(scenario())
    finally:
        gateway.store.close()
    assert took <= 0.5 + 0.3, took
    print(f"sign-out honoured after {took:.2f} s ({answered_ok} reads in between; recheck 0.5 s)")


def test_blocked_users_cannot_interact_with_or_reply_to_the_blocker(
    deployment: Deployment, redis_client: redis.Redis, issuer: TokenIssuer
) -> None:
    alice, blocker, carol = 7, 9, 11
    redis_client.sadd(keys.blocked(blocker), alice)
    as_alice = auth(issuer, alice)

    def interaction(action: str, target: int, tweet_id: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"tweet_id": tweet_id} if tweet_id is not None else {}
        event = new_event(
            UserInteraction, actor_id=alice, action=action, target_user_id=target, **fields
        )
        return dict(json.loads(encode(event)))

    reply = tweet_body(alice, 900, reply_to_tweet_id=50, reply_to_user_id=blocker)
    with (
        start_gateway(deployment, issuer) as running,
        httpx.Client(base_url=running.url, timeout=30) as http,
    ):
        wait_for(running.gateway.health.ready, 20, "readiness")

        def post(body: dict[str, Any]) -> tuple[int, str | None]:
            response = http.post("/v1/events", json=body, headers=as_alice)
            return response.status_code, response.json().get("reason")

        refused = [
            post(interaction("like", blocker, 50)),
            post(interaction("retweet", blocker, 50)),
            post(interaction("reply", blocker, 50)),
            post(interaction("quote", blocker, 50)),
            post(interaction("follow", blocker)),
            post(reply),
        ]
        assert refused == [(403, "blocked")] * 6
        # Undoing and protecting oneself stay possible; others are not affected.
        allowed = [
            post(interaction("unfollow", blocker)),
            post(interaction("unlike", blocker, 50)),
            post(interaction("block", blocker)),
            post(interaction("mute", blocker)),
            post(interaction("like", carol, 60)),
            post(tweet_body(alice, 901, reply_to_tweet_id=60, reply_to_user_id=carol)),
        ]
        assert [status for status, _ in allowed] == [202] * 6
        redis_client.srem(keys.blocked(blocker), alice)
        assert post(interaction("like", blocker, 50))[0] == 202
        metrics = httpx.get(running.metrics_url + "/metrics").text
        assert 'starling_gateway_auth_failures_total{reason="blocked"} 6.0' in metrics


def test_stream_cap_per_user_and_oversized_headers(
    deployment: Deployment, issuer: TokenIssuer
) -> None:
    with start_gateway(
        deployment, issuer, max_streams_per_user=2, max_header_bytes=8192, heartbeat_s=1.0
    ) as running:
        first = Stream(running.url, 5, issuer.mint(5)).start()
        second = Stream(running.url, 5, issuer.mint(5)).start()
        third = httpx.get(running.url + "/v1/users/5/stream", headers=auth(issuer, 5))
        assert third.status_code == 429
        assert (third.json()["error"], third.json()["reason"]) == ("too_many_streams",) * 2
        # The cap is per user: another user streams.
        other = Stream(running.url, 6, issuer.mint(6)).start()
        assert not other.closed.is_set()

        token = issuer.mint(5)
        padding = b"x" * 10_000
        status, body = raw_request(
            running.server.port,
            b"GET /v1/users/5/timeline HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"X-Padding: " + padding + b"\r\n\r\n",
        )
        assert status == 431
        assert json.loads(body)["reason"] == "header_too_large"
        # A huge header line sent without ever ending the head: refused all the same.
        status, body = raw_request(
            running.server.port, b"GET /v1/trends HTTP/1.1\r\nX-A: " + b"y" * 20_000
        )
        assert status == 431
        # Still serving, and a head within the limit is fine.
        fine = httpx.get(
            running.url + "/v1/users/5/timeline",
            headers={**auth(issuer, 5), "X-Padding": "x" * 4000},
        )
        assert fine.status_code == 200, fine.text
        assert first.events == [] and second.events == []


@pytest.mark.parametrize(
    ("proxies", "trusted"), [("127.0.0.0/8,10.0.0.0/8", True), ("10.0.0.0/8", False)]
)
def test_header_mode_counts_the_header_only_from_trusted_proxies(
    deployment: Deployment, proxies: str, trusted: bool
) -> None:
    with (
        start_gateway(deployment, None, auth="header", trusted_proxies=proxies) as running,
        httpx.Client(base_url=running.url) as http,
    ):
        response = http.get("/v1/users/7/timeline", headers={"X-Starling-User": "7"})
        if trusted:
            assert response.status_code == 200, response.text
            other = http.get("/v1/users/8/timeline", headers={"X-Starling-User": "7"})
            assert (other.status_code, other.json()["reason"]) == (403, "not_your_resource")
        else:
            assert (response.status_code, response.json()["reason"]) == (401, "untrusted_peer")
        # Tokens mean nothing in header mode.
        assert (
            http.get("/v1/users/7/timeline", headers={"Authorization": "Bearer x"}).status_code
            == 401
        )
