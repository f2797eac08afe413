"""Which offsets the runtime may commit, and what the group coordinator confirmed.

The rule the whole runtime rests on: an offset is committed only after the effects of
every message before it are durable. `CommitLedger` holds, per owned partition, the
offset after the last *finished* message (`done`) and the offset the coordinator
confirmed (`committed`); anything in `done` may be committed, at any time, by any kind of
commit, because it only ever contains finished work.

Commits are asynchronous on the hot path (a synchronous one is a broker round trip per
batch, a quarter of the no-op runtime's time) with at most one in flight, so commit
requests never overtake one another and a committed offset never moves backwards.
Losing an asynchronous commit (it fails, or the process dies before it lands) means the
work after the last confirmed offset is redelivered, never skipped: at-least-once holds,
and effects are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Message, TopicPartition

Partition = tuple[str, int]

# An asynchronous commit unanswered for this long is presumed lost, so committing resumes.
# librdkafka answers every request within `socket.timeout.ms` (60 s by default), so this
# only guards against a callback that never comes.
COMMIT_STALL_S = 90.0

# Typed loosely: a consumed message without an error always has all three.
_partition_of: Callable[[Any], Any] = Message.partition
_offset_of: Callable[[Any], Any] = Message.offset
_topic_of: Callable[[Any], Any] = Message.topic


def next_offsets(messages: Sequence[Any], topic: str | None = None) -> dict[Partition, int]:
    """Per partition in `messages`, the offset to commit once they are all done: the
    offset after the partition's last message in the batch.

    librdkafka hands over each partition's messages in offset order, so the last one
    seen is the highest; `dict` keeps the last value per key. The per-message work runs
    in C (`map` over the Message methods, one `dict` build): a Python loop with a dict
    store per message cost more than the rest of the no-op runtime's per-message work.
    `topic`: the batch's only topic, when the runtime consumes one (saves a call per
    message); `messages` must hold no error events.
    """
    if topic is not None:
        last = dict(zip(map(_partition_of, messages), map(_offset_of, messages), strict=True))
        return {(topic, partition): offset + 1 for partition, offset in last.items()}
    keys = zip(map(_topic_of, messages), map(_partition_of, messages), strict=True)
    last_by_key = dict(zip(keys, map(_offset_of, messages), strict=True))
    return {key: offset + 1 for key, offset in last_by_key.items()}


class CommitLedger:
    """Owned partitions, finished offsets and confirmed offsets of one consumer."""

    def __init__(
        self,
        *,
        stall_after_s: float = COMMIT_STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owned: set[Partition] = set()
        # The offset after the last message whose effects are durable.
        self.done: dict[Partition, int] = {}
        # The last offset the coordinator confirmed (also what lag is measured from).
        self.committed: dict[Partition, int] = {}
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._in_flight_since: float | None = None

    # ------------------------------------------------------------------ ownership

    def assign(self, partitions: Iterable[Partition]) -> None:
        self.owned.update(partitions)

    def release(self, partitions: Iterable[Partition]) -> None:
        """Forget partitions that are no longer ours: nothing is committed for them
        afterwards, whatever is still in a batch or in flight."""
        for partition in partitions:
            self.owned.discard(partition)
            self.done.pop(partition, None)
            self.committed.pop(partition, None)

    def drop_unconfirmed(self) -> None:
        """Commit nothing more (the runtime failed): finished work whose commit was not
        confirmed is redelivered to the next owner."""
        self.done.clear()

    # ------------------------------------------------------------------ progress

    def finish(self, offsets: Mapping[Partition, int]) -> None:
        """A batch's effects are durable and its outputs acknowledged: its offsets may
        be committed. Partitions revoked or lost while the batch was consumed are
        skipped (their new owner starts from what was committed on revocation)."""
        owned = self.owned
        done = self.done
        for partition, offset in offsets.items():
            if partition in owned and offset > done.get(partition, -1):
                done[partition] = offset

    def due(self, only: Collection[Partition] | None = None) -> list[TopicPartition]:
        """Finished offsets not yet confirmed (optionally only for `only`)."""
        committed = self.committed
        return [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self.done.items()
            if offset > committed.get((topic, partition), -1)
            and (only is None or (topic, partition) in only)
        ]

    # ------------------------------------------------------------------ commits

    def may_send_async(self) -> bool:
        """No asynchronous commit in flight (or the one in flight is presumed lost)."""
        since = self._in_flight_since
        return since is None or self._clock() - since > self._stall_after_s

    def sent_async(self) -> None:
        self._in_flight_since = self._clock()

    def async_result(self, error: Any, partitions: Iterable[TopicPartition]) -> bool:
        """The answer to the asynchronous commit in flight; False if any part failed.
        Failed partitions stay due and are carried by the next commit."""
        self._in_flight_since = None
        return self._confirm(partitions, request_failed=error is not None)

    def sync_result(self, partitions: Iterable[TopicPartition]) -> bool:
        return self._confirm(partitions, request_failed=False)

    def _confirm(self, partitions: Iterable[TopicPartition], *, request_failed: bool) -> bool:
        ok = not request_failed
        owned = self.owned
        committed = self.committed
        for confirmed in partitions:
            # A request-level error may come with partitions that carry no error of their
            # own; whether those were stored is unknown, so they count as not committed.
            if request_failed or confirmed.error is not None:
                ok = False
                continue
            key = (confirmed.topic, confirmed.partition)
            # A late answer for a partition released meanwhile says nothing about its
            # new owner's offsets.
            if key in owned and confirmed.offset > committed.get(key, -1):
                committed[key] = confirmed.offset
        return ok
