"""The gateway's routing index for new tweets: who of the connected users follows whom,
kept exact as streams open and close and follows are reloaded; and the `live:tweets`
message ingestion publishes."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from starling.gateway.app import Gateway
from starling.gateway.follows import FollowIndex
from starling.gateway.settings import GatewaySettings
from starling.runtime.config import RuntimeSettings
from starling.store import keys
from starling.store.live import (
    MAX_TWEETS_PER_MESSAGE,
    NewTweets,
    decode_new_tweets,
    publish_new_tweets,
)

pytestmark = pytest.mark.unit

ALICE, BOB, CAROL, XAVIER, YVES = 1, 2, 3, 100, 200


def test_routes_each_tweet_to_connected_followers_and_the_author() -> None:
    index = FollowIndex(max_entries=10_000)
    for user in (ALICE, BOB, XAVIER):
        assert index.open(user)
    index.update(ALICE, [XAVIER, YVES])
    index.update(BOB, [YVES])
    # Carol follows Xavier but is not connected: nothing is held for her.
    assert not index.update(CAROL, [XAVIER])
    assert index.entries == 3

    routed = index.route([(11, XAVIER), (12, YVES), (13, CAROL)])
    # Xavier is connected: his own tweet reaches him too (it is in his timeline).
    assert routed == {ALICE: [11, 12], XAVIER: [11], BOB: [12]}
    assert index.route([]) == {}


def test_a_user_following_themselves_gets_their_tweet_once() -> None:
    index = FollowIndex(max_entries=10_000)
    index.open(ALICE)
    index.update(ALICE, [ALICE, XAVIER])
    assert index.following(ALICE) == {XAVIER}
    assert index.route([(5, ALICE)]) == {ALICE: [5]}


def test_refresh_replaces_follows_and_the_reverse_index() -> None:
    index = FollowIndex(max_entries=10_000)
    index.open(ALICE)
    index.update(ALICE, [XAVIER])
    assert index.route([(1, YVES)]) == {}
    # Alice followed Yves and unfollowed Xavier while connected: the next load says so.
    index.update(ALICE, [YVES])
    assert index.route([(2, XAVIER), (3, YVES)]) == {ALICE: [3]}
    assert index.entries == 1
    index.update(ALICE, [])
    assert index.route([(4, YVES)]) == {} and index.entries == 0


def test_entries_last_until_the_users_last_stream_closes() -> None:
    index = FollowIndex(max_entries=10_000)
    assert index.open(ALICE) is True
    assert index.open(ALICE) is False  # a second tab: no second load
    index.update(ALICE, [XAVIER])
    assert index.close(ALICE) is False
    assert index.route([(1, XAVIER)]) == {ALICE: [1]}
    assert index.close(ALICE) is True
    assert not index.connected(ALICE)
    assert index.route([(2, XAVIER)]) == {} and index.entries == 0
    # A load that finishes after the last stream closed leaves nothing behind.
    assert index.update(ALICE, [XAVIER]) is False
    assert index.route([(3, XAVIER)]) == {} and index.entries == 0


def test_streams_of_many_followers_of_one_author() -> None:
    index = FollowIndex(max_entries=10_000)
    readers = range(1000, 1500)
    for reader in readers:
        index.open(reader)
        index.update(reader, [XAVIER, reader + 1])
    routed = index.route([(9, XAVIER)])
    assert sorted(routed) == list(readers) and all(ids == [9] for ids in routed.values())
    for reader in readers:
        index.close(reader)
    assert index.entries == 0 and index.route([(9, XAVIER)]) == {}


def test_the_pods_entry_budget_bounds_every_load() -> None:
    truncated: list[int] = []
    index = FollowIndex(max_entries=5, on_truncate=lambda: truncated.append(1))
    for user in (ALICE, BOB, CAROL):
        index.open(user)
    index.update(ALICE, [100, 101, 102])
    # Bob wants 3 more: only 2 fit, and the cut is counted.
    index.update(BOB, [200, 201, 202])
    assert len(index.following(BOB)) == 2 and index.entries == 5 and truncated == [1]
    assert index.following(BOB) <= {200, 201, 202}
    index.update(CAROL, [300])
    assert index.following(CAROL) == frozenset() and index.entries == 5
    # A reload may use the room its own previous entries hold.
    index.update(ALICE, [103, 104, 105])
    assert index.following(ALICE) == {103, 104, 105} and index.entries == 5
    index.close(BOB)
    index.update(CAROL, [300])
    assert index.following(CAROL) == {300} and index.entries == 4


class RecordingPipe:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, channel: str, message: bytes) -> None:
        self.published.append((channel, message))


def test_new_tweets_are_one_bounded_message_per_batch() -> None:
    pipe = RecordingPipe()
    tweets = [(tweet_id, tweet_id % 7) for tweet_id in range(1, 2 * MAX_TWEETS_PER_MESSAGE + 2)]
    publish_new_tweets(pipe, tweets)
    assert [channel for channel, _ in pipe.published] == [keys.LIVE_TWEETS_CHANNEL] * 3
    decoded = [pair for _, message in pipe.published for pair in decode_new_tweets(message).tweets]
    assert decoded == tweets
    first = json.loads(pipe.published[0][1])
    assert first["kind"] == "tweets" and first["tweets"][0] == [1, 1]
    publish_new_tweets(pipe, [])
    assert len(pipe.published) == 3
    with pytest.raises(msgspec.ValidationError):
        decode_new_tweets(b'{"kind": "timeline", "tweet_ids": [1]}')
    assert decode_new_tweets(msgspec.json.encode(NewTweets([(1, 2)]))).tweets == [(1, 2)]


def test_live_tweets_channel_is_not_a_user_channel() -> None:
    assert keys.user_of_live_channel(keys.LIVE_TWEETS_CHANNEL) is None


def test_gateway_pushes_new_tweets_as_timeline_events() -> None:
    runtime = RuntimeSettings(
        starling_service="gateway", kafka_bootstrap_servers="127.0.0.1:1", store_port=1
    )
    # No token reaches this gateway: the issuer is never asked for keys.
    settings = GatewaySettings(issuer="http://127.0.0.1:1", audience="starling")
    gateway = Gateway(runtime, settings, producer_overrides={"log_level": 0})

    async def scenario() -> None:
        alice, bob = gateway.hub.subscribe(ALICE), gateway.hub.subscribe(BOB)
        gateway.follows.open(ALICE)
        gateway.follows.open(BOB)
        gateway.follows.update(ALICE, [XAVIER])
        gateway.follows.update(BOB, [YVES])
        gateway._on_new_tweets([(41, XAVIER), (42, XAVIER)])
        assert alice.queue.get_nowait() == (
            f"event: timeline\nid: {gateway.hub.replay.epoch}-1\n".encode()
            + b'data: {"kind":"timeline","tweet_ids":[41,42]}\n\n'
        )
        assert bob.queue.empty()

    try:
        asyncio.run(scenario())
        metrics = gateway.metrics.registry.get_sample_value
        assert metrics("starling_gateway_updates_pushed_total", {"kind": "timeline"}) == 1.0
        assert metrics("starling_gateway_follow_entries") == 2.0
    finally:
        gateway.producer.close()
        gateway.store.close()
