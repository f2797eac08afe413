"""`starling loadgen --store-url`: the generated users' handles and follow graph land in
the real store, so the real ingestion resolves `@u<n>` mentions to notification
candidates (and fans tweets out to followers), which it cannot without them."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Message

from starling.events import Notification, NotificationKind, TweetCreated, decode
from starling.loadgen import TrafficConfig, TrafficGenerator, user_id_for_handle
from starling.loadgen.cli import register
from starling.loadgen.sink import read_events_file
from starling.loadgen.store import redacted
from starling.runtime.config import RuntimeSettings
from starling.runtime.handler import Outbox, Record
from starling.services.ingestion import IngestionHandler
from starling.store import keys

if TYPE_CHECKING:
    import redis

    from starling.harness.redis import RedisServer

USERS = 300
SEED = 11


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loadgen", *argv])
    result: int = args.handler(args)
    return result


def generate(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    output = tmp_path / "traffic.jsonl"
    argv = ["--output", str(output), "--count", "600", "--rate", "0", "--users", str(USERS)]
    argv += ["--seed", str(SEED), "--epoch", "2026-01-01T00:00:00Z", "--quiet", *extra]
    return run(argv), output


def mention_candidates(redis_server: RedisServer, output: Path) -> list[Notification]:
    """What the real ingestion emits for the generated tweets, on the real store."""
    settings = RuntimeSettings(
        starling_service="ingestion",
        kafka_bootstrap_servers="unused:9092",
        store_host=redis_server.host,
        store_port=redis_server.port,
    )
    handler = IngestionHandler(settings)
    records = [
        Record(Message(topic=topic, partition=0, offset=offset), event)
        for offset, (topic, _key, payload) in enumerate(read_events_file(output))
        if isinstance(event := decode(payload), TweetCreated)
    ]
    outbox = Outbox()
    try:
        handler.handle(records, outbox)
    finally:
        handler.close()
    found: list[Notification] = []
    for topic, _key, value, _timestamp in outbox.messages:
        if topic == "notifications":
            event: Any = decode(value)
            if event.kind is NotificationKind.MENTION:
                found.append(event)
    return found


def test_store_url_loads_handles_and_graph_so_mentions_resolve(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    status, output = generate(tmp_path)
    assert status == 0
    # Without the handle index (what a local run had): no mention ever notifies.
    assert mention_candidates(redis_server, output) == []
    redis_client.flushdb()

    status, output = generate(tmp_path, "--store-url", redis_server.url)
    assert status == 0
    assert redis_client.hlen(keys.HANDLES) == USERS
    assert redis_client.hget(keys.HANDLES, "u42") == b"42"
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    generator = TrafficGenerator(TrafficConfig(seed=SEED, users=USERS, epoch=epoch))
    for user in (1, 2, USERS):
        stored: Any = redis_client.smembers(keys.followers(user))
        assert {int(member) for member in stored} == set(generator.graph.followers(user))

    found = mention_candidates(redis_server, output)
    assert found, "generated tweets mention users: some mention must notify"
    for notification in found:
        assert notification.actor_id != notification.recipient_id
        assert 1 <= notification.recipient_id <= USERS
    # Each recipient was mentioned by handle in the tweet that notified them.
    tweets = {
        event.tweet_id: event
        for _topic, _key, payload in read_events_file(output)
        if isinstance(event := decode(payload), TweetCreated)
    }
    for notification in found:
        assert notification.tweet_id is not None
        mentioned = {
            user_id_for_handle(word.rstrip(".,!?:;"))
            for word in tweets[notification.tweet_id].text.split()
            if word.startswith("@")
        }
        assert notification.recipient_id in mentioned

    # Loading again (a restart of the generator) changes nothing.
    assert generate(tmp_path, "--store-url", redis_server.url)[0] == 0
    assert redis_client.hlen(keys.HANDLES) == USERS


def test_unreachable_store_is_one_line_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = generate(tmp_path, "--store-url", "redis://:secret@127.0.0.1:1/0")
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("loadgen: error: could not load users into the store at")
    assert "start the store, or fix --store-url" in error
    assert "secret" not in error  # the password never reaches a log
    assert not output.exists()  # nothing sent before the store was ready


def test_bad_store_url_names_the_expected_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _output = generate(tmp_path, "--store-url", "http://127.0.0.1:6379")
    assert status == 2
    assert "use redis://HOST:PORT[/DB]" in capsys.readouterr().err


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://:pw@host:6379/1") == "redis://:***@host:6379/1"
    assert redacted("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
