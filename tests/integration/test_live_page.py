"""The live page in a real headless Chromium (Debian's `chromium`, driven by Selenium through
`/usr/bin/chromedriver`): two users sign in at the identity service from the page, B
follows A from the page, A posts tweets mentioning @u2, and B's page shows each tweet on
the timeline and the mention notification without a reload. Real broker and store, the
identity service and the gateway over real HTTP, ingestion and the notifier running.
Then the gateway restarts: B's page reconnects without a reload and shows a tweet fanned
out while the gateway was down. Prints the post -> B's page latency (p50/p99) and saves
docs/images/live-page.png."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from starling.events import Platform, TweetCreated, encode, new_event
from starling.gateway.server import build_server
from starling.gateway.settings import GatewaySettings
from starling.harness._process import free_ports
from starling.identity.contract import JWKS_PATH
from starling.services.ingestion import IngestionHandler, IngestionSettings
from starling.services.notifier import NotifierHandler, NotifierSettings
from starling.services.trends import TrendsHandler, TrendsSettings
from starling.store import keys
from starling.store.graph import load_graph
from starling.topics import TWEETS as TWEETS_TOPIC
from tests.integration.identity.servers import ISSUER, start_identity
from tests.integration.services.gateway_server import RunningGateway
from tests.integration.services.helpers import Deployment, ThreadedRuntime, new_prefix, wait_for

if TYPE_CHECKING:
    import redis
    from selenium.webdriver.remote.webdriver import WebDriver

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEV_PASSWORD = "starling-dev-password"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "live-page.png"
TWEETS = 12
MISSED_TWEET = 900_001


@pytest.fixture
def deployment(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis
) -> Deployment:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    return deployment


@pytest.fixture
def browsers() -> Iterator[list[WebDriver]]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install both)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    started: list[WebDriver] = []

    def start() -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        started.append(driver)
        return driver

    try:
        yield [start(), start()]
    finally:
        for driver in started:
            driver.quit()


def sign_in(driver: WebDriver, url: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(
        lambda: driver.execute_script("return document.body.dataset.loaded") == "true",
        10,
        "the page to load",
    )
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(DEV_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(
        lambda: driver.execute_script("return document.body.dataset.ready") == "true",
        20,
        f"{username} to be signed in: {error_of(driver)}",
    )
    wait_for(lambda: state_of(driver) == "live", 10, f"{username}'s stream to open")


def error_of(driver: WebDriver) -> Any:
    return driver.execute_script(
        "return document.getElementById('sign-in-error').textContent"
        " + ' ' + document.getElementById('compose-status').textContent"
    )


SHOWN = "return window.starling.shown[arguments[0]] || null"


def shown_on(driver: WebDriver, tweet_id: str) -> bool:
    """Whether `driver`'s page has rendered the tweet (the page records when)."""
    return driver.execute_script(SHOWN, tweet_id) is not None


def state_of(driver: WebDriver) -> Any:
    return driver.execute_script("return document.getElementById('stream-state').textContent")


def start_services(deployment: Deployment) -> list[ThreadedRuntime]:
    """Ingestion (fan-out, mentions), the notifier (inbox, follows) and trends, in threads."""
    ingestion, notifier = deployment.settings("ingestion"), deployment.settings("notifier")
    trends = deployment.settings("trends")
    return [
        ThreadedRuntime(
            ingestion,
            IngestionHandler(ingestion, settings=IngestionSettings()),
            serve_metrics=False,
        ).start(),
        ThreadedRuntime(
            notifier, NotifierHandler(notifier, settings=NotifierSettings()), serve_metrics=False
        ).start(),
        ThreadedRuntime(
            trends, TrendsHandler(trends, settings=TrendsSettings()), serve_metrics=False
        ).start(),
    ]


def produce_tweet(deployment: Deployment, tweet_id: int, author: int, text: str) -> None:
    """A tweet straight onto the topic, as if posted through another gateway."""
    from confluent_kafka import Producer

    tweet = new_event(
        TweetCreated, tweet_id=tweet_id, author_id=author, text=text, platform=Platform.WEB
    )
    producer = Producer({"bootstrap.servers": deployment.kafka.bootstrap_servers})
    producer.produce(deployment.topic(TWEETS_TOPIC), encode(tweet), tweet.partition_key())
    assert producer.flush(10) == 0


def post_and_time(a: WebDriver, b: WebDriver, n: int) -> float:
    """A posts tweet `n` from the page; ms from the click until B's page shows it."""
    from selenium.webdriver.common.by import By

    text = a.find_element(By.ID, "tweet-text")
    text.send_keys(f"hello @u2, live tweet {n} #starling")
    a.find_element(By.CSS_SELECTOR, "#compose button[type=submit]").click()
    wait_for(
        lambda: (
            a.execute_script("return document.getElementById('compose-status').dataset.tweetId")
            is not None
            and a.find_element(By.ID, "tweet-text").get_attribute("value") == ""
        ),
        10,
        f"A's post {n}: {error_of(a)}",
        interval=0.02,
    )
    tweet_id, posted_ms = a.execute_script(
        "const s = document.getElementById('compose-status').dataset;"
        " return [s.tweetId, Number(s.postedMs)];"
    )
    wait_for(
        partial(shown_on, b, tweet_id),
        60,
        f"tweet {n} on B's timeline",
        interval=0.02,
    )
    shown_ms: float = b.execute_script(SHOWN, tweet_id)
    return shown_ms - posted_ms


def test_two_users_live_in_chromium(
    deployment: Deployment, redis_client: redis.Redis, tmp_path: Path, browsers: list[WebDriver]
) -> None:
    from selenium.webdriver.common.by import By

    seed = tmp_path / "seed"
    seed.write_bytes(b"live-page-test-seed-0123456789abcdef0123456789abcdef")
    # Mentions resolve through the handle index (the loadgen loads it for its users).
    load_graph(redis_client, {}, handles={"u1": 1, "u2": 2})
    # B's who-to-follow list as the timelines service keeps it from the DAG's output.
    redis_client.hset(
        keys.who_to_follow(2),
        mapping={"time_ms": 1, "items": b'[{"user_id":1,"score":0.9,"reason":"fof"}]'},
    )
    (gateway_port,) = free_ports(1)
    page_url = f"http://127.0.0.1:{gateway_port}"
    a, b = browsers
    services = start_services(deployment)
    try:
        with start_identity(
            deployment, seed, dev_mode=True, demo_users=10, allowed_origins=[page_url]
        ) as identity:
            runtime = deployment.settings("gateway", starling_shutdown_timeout_s=5.0)
            settings = GatewaySettings(
                http_host="127.0.0.1",
                http_port=gateway_port,
                issuer=ISSUER,
                audience="starling",
                jwks_url=identity.url + JWKS_PATH,
                identity_url=identity.url,
                follow_refresh_s=0.5,
            )
            with RunningGateway(build_server(runtime, settings)) as gateway:
                live = gateway.gateway.live_feed
                assert live is not None and live.ready.wait(20)
                sign_in(a, page_url, "u1")
                sign_in(b, page_url, "u2")

                # B follows A from the page's who-to-follow list; the notifier records it.
                b.find_element(
                    By.CSS_SELECTOR, "#who-to-follow li[data-user-id='1'] button"
                ).click()
                wait_for(
                    lambda: redis_client.sismember(keys.followers(1), "2") == 1,
                    60,
                    "the follow to reach the graph",
                )
                wait_for(
                    lambda: 1 in gateway.gateway.follows.following(2),
                    10,
                    "the gateway to route A's tweets to B",
                )

                latencies = [post_and_time(a, b, n) for n in range(TWEETS)]
                # The mention notifications arrive live too (one per tweet, none lost).
                wait_for(
                    lambda: (
                        len(
                            b.find_elements(By.CSS_SELECTOR, "#notifications li[data-kind=mention]")
                        )
                        >= 1
                    ),
                    30,
                    "B's mention notification",
                )
                # The burst of #starling leads the open window on B's page (read every 5 s).
                wait_for(
                    lambda: bool(
                        b.find_elements(By.CSS_SELECTOR, "#leaders li[data-hashtag=starling]")
                    ),
                    30,
                    "#starling among the current window's leaders on B's page",
                )
                # No reload happened: the page still has its in-memory token and stream.
                assert b.execute_script("return document.body.dataset.ready") == "true"
                assert state_of(b) == "live"
                timeline = b.find_element(By.ID, "timeline").text
                assert f"live tweet {TWEETS - 1}" in timeline
                time.sleep(0.5)  # the slide-in animation (0.35 s) done before the picture
                b.set_window_size(1280, 1500)  # tall enough for trends and who-to-follow
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                b.save_screenshot(str(SCREENSHOT))

            # The gateway restarts; a tweet fanned out while it is down is not lost: B's page
            # reconnects by itself (no reload, same in-memory token) and re-reads.
            wait_for(lambda: state_of(b) != "live", 10, "B's page to notice the restart")
            produce_tweet(deployment, MISSED_TWEET, 1, "posted while the gateway was down")
            wait_for(
                lambda: redis_client.zscore(keys.timeline(2), MISSED_TWEET) is not None,
                30,
                "the missed tweet in B's stored timeline",
            )
            restarted = time.monotonic()
            with RunningGateway(build_server(runtime, settings)):
                wait_for(
                    partial(shown_on, b, str(MISSED_TWEET)),
                    30,
                    "the tweet fanned out during the restart on B's page",
                )
                back_after = time.monotonic() - restarted
                assert state_of(b) == "live"
                assert b.execute_script("return document.body.dataset.ready") == "true"
        first = latencies[0]
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(
            f"post (A's page) -> tweet on B's page: {len(latencies)} tweets, p50 {p50:.0f} ms,"
            f" p99 {p99:.0f} ms, first {first:.0f} ms"
            f" (all: {[round(x) for x in latencies]}); after a gateway restart the page"
            f" was live again with the missed tweet {back_after:.1f} s after the gateway came back"
        )
    finally:
        for service in services:
            service.stop()
    for service in services:
        assert service.error is None
