"""Blocks and mutes stop notifications by event time, whatever the arrival order (issue 12,
defect 10): against a real Redis, the decision's rules; against a real broker, the issue's
experiment — 200 "block, then a like from the blocked user 1 ms later" pairs, blocks and
likes on different partitions, produced in adversarial orders, read by two notifier
replicas — with likes before a block and after an unblock still delivered."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from starling.events import (
    InteractionAction,
    NotificationKind,
    UserInteraction,
    encode,
    new_event,
)
from starling.runtime.handler import TopicPartitions
from starling.services.notifier import NotifierHandler, NotifierSettings
from starling.store import keys
from starling.store.graph import apply_interaction
from starling.store.notifications import DeliveryStatus, InboxEntry, NotificationStore, statuses
from starling.topics import INTERACTIONS
from tests.integration.services.helpers import Deployment, ThreadedRuntime, new_prefix, wait_for

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = pytest.mark.integration

BLOCKER, OTHER = 10, 11
T = 1_800_000_000_000  # event time (ms) of the first block in the store-level tests


def _like(recipient: int, actor: int, time_ms: int) -> InboxEntry:
    return InboxEntry(
        id=uuid.uuid4().hex,
        kind=NotificationKind.LIKE.value,
        time_ms=time_ms,
        source_event_id=uuid.uuid4().hex,
        actor_id=actor,
        tweet_id=1,
    )


def _change(client: redis.Redis, action: InteractionAction, time_ms: int) -> None:
    pipe = client.pipeline(transaction=False)
    apply_interaction(pipe, action, BLOCKER, OTHER, time_ms)
    pipe.execute()


def _decide(client: redis.Redis, *times_ms: int) -> list[DeliveryStatus]:
    store = NotificationStore(client, fatigue_cap=1000, fatigue_window_s=3600)
    pipe = client.pipeline(transaction=False)
    for time_ms in times_ms:
        store.decide(pipe, BLOCKER, _like(BLOCKER, OTHER, time_ms), push_enabled=False, now_ms=0)
    return statuses(pipe.execute())


def test_block_applies_from_its_event_time_until_the_unblock(redis_client: redis.Redis) -> None:
    # Arrival order is the reverse of event order: the unblock first, then the block.
    _change(redis_client, InteractionAction.UNBLOCK, T + 100)
    _change(redis_client, InteractionAction.BLOCK, T)
    # The current set (the gateway's view) follows the latest change by event time.
    assert not redis_client.sismember(keys.blocked(BLOCKER), str(OTHER))
    delivered, blocked = DeliveryStatus.DELIVERED, DeliveryStatus.FILTERED_BLOCKED
    assert _decide(redis_client, T - 1, T, T + 1, T + 99, T + 100, T + 101) == [
        delivered,  # before the block
        blocked,  # same millisecond: a tie counts as blocked
        blocked,
        blocked,  # decided after the unblock arrived, but its event was during the block
        delivered,
        delivered,
    ]
    _change(redis_client, InteractionAction.BLOCK, T + 200)
    assert redis_client.sismember(keys.blocked(BLOCKER), str(OTHER))
    assert _decide(redis_client, T + 150, T + 201) == [delivered, blocked]


def test_mute_applies_by_event_time_and_old_sets_still_filter(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    apply_interaction(pipe, InteractionAction.MUTE, BLOCKER, OTHER, T)
    pipe.execute()
    assert _decide(redis_client, T - 1, T + 1) == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FILTERED_MUTED,
    ]
    # A block written without an event time (tools, state from before the logs) filters
    # every notification, whatever its time, as before.
    redis_client.delete(keys.mute_log(BLOCKER, OTHER), keys.muted(BLOCKER))
    redis_client.sadd(keys.blocked(BLOCKER), OTHER)
    assert _decide(redis_client, 0) == [DeliveryStatus.FILTERED_BLOCKED]


class _Replica(NotifierHandler):
    """A notifier that says when the group gave it partitions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assigned = threading.Event()

    def partitions_assigned(self, partitions: TopicPartitions) -> None:
        if partitions:
            self.assigned.set()


PAIRS = 200
BEFORE_BLOCK = 20  # likes 1 ms before the block: delivered
UNBLOCKED = 20  # block, unblock 10 ms later, a like 5 ms and one 20 ms after the block


PARTITIONS = 12  # of user.interactions
FIRST_UNBLOCKED = PAIRS + BEFORE_BLOCK
Wire = list[tuple[UserInteraction, int]]  # (event, partition)


def at(base: datetime, index: int, offset_ms: int) -> datetime:
    return base + timedelta(milliseconds=index * 50 + offset_ms)


def blocker(index: int) -> int:
    return 100_000 + index


def blocked(index: int) -> int:
    return 200_000 + index


def interaction(
    actor: int, action: InteractionAction, target: int, time: datetime
) -> UserInteraction:
    return new_event(
        UserInteraction,
        actor_id=actor,
        action=action,
        target_user_id=target,
        tweet_id=7 if action is InteractionAction.LIKE else None,
        event_time=time,
    )


def _experiment(base: datetime) -> tuple[Wire, Wire]:
    """What to produce, in order, then the blocks to produce after it; a pair's block and
    like always on different partitions."""
    wire: Wire = []
    late_blocks: Wire = []
    for index in range(PAIRS):
        block = interaction(
            blocker(index), InteractionAction.BLOCK, blocked(index), at(base, index, 0)
        )
        like = interaction(
            blocked(index), InteractionAction.LIKE, blocker(index), at(base, index, 1)
        )
        block_partition, like_partition = index % PARTITIONS, (index + 5) % PARTITIONS
        if index < PAIRS // 2:
            # The first half's likes are all on the broker before any of their blocks.
            wire.append((like, like_partition))
            late_blocks.append((block, block_partition))
        elif index % 2:
            wire += [(like, like_partition), (block, block_partition)]
        else:
            wire += [(block, block_partition), (like, like_partition)]
    for index in range(PAIRS, FIRST_UNBLOCKED):
        block = interaction(
            blocker(index), InteractionAction.BLOCK, blocked(index), at(base, index, 1)
        )
        like = interaction(
            blocked(index), InteractionAction.LIKE, blocker(index), at(base, index, 0)
        )
        # The block arrives first; the like is older, so it was made before the block.
        wire += [(block, index % PARTITIONS), (like, (index + 5) % PARTITIONS)]
    for index in range(FIRST_UNBLOCKED, FIRST_UNBLOCKED + UNBLOCKED):
        a, b, own, other = (
            blocker(index),
            blocked(index),
            index % PARTITIONS,
            (index + 5) % PARTITIONS,
        )
        wire += [
            (interaction(b, InteractionAction.LIKE, a, at(base, index, 20)), other),
            (interaction(b, InteractionAction.LIKE, a, at(base, index, 5)), other),
            (interaction(a, InteractionAction.UNBLOCK, b, at(base, index, 10)), own),
            (interaction(a, InteractionAction.BLOCK, b, at(base, index, 0)), own),
        ]
    return wire, late_blocks


def test_block_stops_a_like_1_ms_later_in_any_partition_order(
    kafka: KafkaCluster, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    from confluent_kafka import Producer

    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    topic = deployment.topic(INTERACTIONS)
    base = datetime.now(UTC) - timedelta(seconds=30)
    wire, blocks = _experiment(base)
    candidates = PAIRS + BEFORE_BLOCK + 2 * UNBLOCKED

    settings = NotifierSettings(settle_ms=3000, fatigue_cap=1000)
    replicas = [
        _Replica(deployment.settings("notifier"), settings=settings),
        _Replica(deployment.settings("notifier"), settings=settings),
    ]
    runtimes = [ThreadedRuntime(deployment.settings("notifier"), r).start() for r in replicas]
    try:
        for replica in replicas:
            wait_for(replica.assigned.is_set, 60, "both notifier replicas assigned")
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 0})

        def send(events: list[tuple[UserInteraction, int]]) -> None:
            for event, partition in events:
                producer.produce(topic, encode(event), event.partition_key(), partition=partition)
            assert producer.flush(10) == 0

        send(wire)
        send(blocks)  # the first half's blocks after their likes are on the broker

        def decided() -> int:
            for runtime in runtimes:
                if runtime.error is not None:
                    raise runtime.error
            return sum(sum(r.decisions.values()) for r in replicas)

        wait_for(lambda: decided() >= candidates, 90, f"{candidates} candidates decided")
    finally:
        for runtime in runtimes:
            runtime.stop()

    store = NotificationStore(redis_client, fatigue_cap=1000, fatigue_window_s=3600)
    delivered_after_block = [i for i in range(PAIRS) if store.inbox_size(blocker(i))]
    assert delivered_after_block == [], (
        f"{len(delivered_after_block)} of {PAIRS} likes made 1 ms after a block were delivered"
    )
    before = [store.inbox_size(blocker(i)) for i in range(PAIRS, FIRST_UNBLOCKED)]
    assert before == [1] * BEFORE_BLOCK, "a like made before the block must be delivered"
    for index in range(FIRST_UNBLOCKED, FIRST_UNBLOCKED + UNBLOCKED):
        inbox = store.inbox(blocker(index))
        # Only the like after the unblock; the one made during the block stays filtered.
        assert [entry.time_ms for entry in inbox] == [int(at(base, index, 20).timestamp() * 1000)]
    totals: dict[str, int] = {}
    for replica in replicas:
        for status, count in replica.decisions.items():
            totals[status] = totals.get(status, 0) + count
    assert totals.get("filtered:blocked") == PAIRS + UNBLOCKED
    assert not redis_client.exists(keys.NOTIFICATIONS_HELD)
