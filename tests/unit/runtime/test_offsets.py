"""What the runtime may commit: the offset after each partition's last message of a
finished batch, only for owned partitions, confirmed only by a successful answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition

from starling.runtime.offsets import CommitLedger, next_offsets

pytestmark = pytest.mark.unit

T = "tweets"


def message(partition: int, offset: int, topic: str = T) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, value=b"x")


def answer(partition: int, offset: int, error: KafkaError | None = None) -> SimpleNamespace:
    """A commit answer's partition, as the client reports it (with a per-partition error)."""
    return SimpleNamespace(topic=T, partition=partition, offset=offset, error=error)


def test_next_offsets_take_each_partitions_last_message_when_partitions_interleave() -> None:
    batch = [message(1, 5), message(1, 6), message(0, 10), message(2, 3), message(0, 11)]
    batch.append(message(1, 7))
    assert next_offsets(batch, T) == {(T, 0): 12, (T, 1): 8, (T, 2): 4}
    assert next_offsets(batch) == {(T, 0): 12, (T, 1): 8, (T, 2): 4}


def test_next_offsets_keep_topics_apart() -> None:
    batch = [message(0, 3, "a"), message(0, 9, "b"), message(0, 4, "a"), message(1, 0, "b")]
    assert next_offsets(batch) == {("a", 0): 5, ("b", 0): 10, ("b", 1): 1}


def test_only_owned_partitions_become_due_and_offsets_never_go_back() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0), (T, 1)])
    ledger.finish({(T, 0): 12, (T, 1): 8, (T, 2): 4})  # partition 2 was revoked meanwhile
    ledger.finish({(T, 0): 5})  # never lowers what is finished
    assert sorted((tp.partition, tp.offset) for tp in ledger.due()) == [(0, 12), (1, 8)]
    assert [(tp.partition, tp.offset) for tp in ledger.due(only={(T, 1)})] == [(1, 8)]


def test_confirmed_offsets_are_no_longer_due() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0), (T, 1)])
    ledger.finish({(T, 0): 12, (T, 1): 8})
    ledger.sent_async()
    assert ledger.async_result(None, [answer(0, 12), answer(1, 8)])
    assert ledger.due() == []
    assert ledger.committed == {(T, 0): 12, (T, 1): 8}


def test_a_failed_partition_stays_due_and_the_others_are_confirmed() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0), (T, 1)])
    ledger.finish({(T, 0): 12, (T, 1): 8})
    failure = KafkaError(KafkaError.REQUEST_TIMED_OUT)
    assert not ledger.async_result(None, [answer(0, 12), answer(1, 8, failure)])
    assert [(tp.partition, tp.offset) for tp in ledger.due()] == [(1, 8)]


def test_a_request_level_error_confirms_nothing() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0)])
    ledger.finish({(T, 0): 12})
    ledger.sent_async()
    failure = KafkaError(KafkaError._TRANSPORT)
    assert not ledger.async_result(failure, [TopicPartition(T, 0, 12)])
    assert [(tp.partition, tp.offset) for tp in ledger.due()] == [(0, 12)]
    assert ledger.may_send_async()  # the answer came: the next commit may go


def test_released_partitions_are_forgotten_and_late_answers_ignored() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0), (T, 1)])
    ledger.finish({(T, 0): 12, (T, 1): 8})
    ledger.sent_async()
    ledger.release([(T, 1)])
    assert [(tp.partition, tp.offset) for tp in ledger.due()] == [(0, 12)]
    assert ledger.async_result(None, [answer(0, 12), answer(1, 8)])
    assert ledger.committed == {(T, 0): 12}
    ledger.finish({(T, 1): 9})  # a batch that still held partition 1's messages
    assert ledger.due() == []


def test_one_commit_in_flight_until_answered_or_presumed_lost() -> None:
    now = [100.0]
    ledger = CommitLedger(stall_after_s=90.0, clock=lambda: now[0])
    assert ledger.may_send_async()
    ledger.sent_async()
    now[0] += 60.0
    assert not ledger.may_send_async()
    now[0] += 31.0
    assert ledger.may_send_async()  # no answer for 91 s: committing resumes
    ledger.sent_async()
    ledger.async_result(None, [])
    assert ledger.may_send_async()


def test_a_synchronous_answer_confirms_without_touching_the_one_in_flight() -> None:
    ledger = CommitLedger()
    ledger.assign([(T, 0)])
    ledger.finish({(T, 0): 12})
    ledger.sent_async()
    assert ledger.sync_result([answer(0, 12)])
    assert ledger.due() == []
    assert not ledger.may_send_async()
