"""The hub's resume: ids order a user's frames, a reconnect with the last id gets exactly
what it missed (its own frames and trends, in order), and an id the pod cannot vouch for
(another epoch, evicted, away too long) gets one `resync` frame."""

from __future__ import annotations

import asyncio
import time

import pytest

from starling.gateway.hub import Hub, ReplayBuffer, Subscription, sse_frame


def hub(per_user: int = 8, total: int = 100, max_age_s: float = 60.0) -> Hub:
    replay = ReplayBuffer(per_user, total, max_age_s, max_gone=10, epoch="e1")
    return Hub(queue_size=100, max_streams=10, replay=replay)


def drain(subscription: Subscription) -> list[bytes]:
    frames = []
    while not subscription.queue.empty():
        frames.append(subscription.queue.get_nowait())
    return frames


def test_resume_replays_exactly_the_missed_frames_in_order() -> None:
    async def scenario() -> None:
        h = hub()
        first = h.subscribe(1)
        assert first.backlog == [b"id: e1-0\n\n"]
        h.to_user(1, "timeline", b"1")
        h.to_user(2, "timeline", b"other")  # user 2 is not kept: no id spent, nothing kept
        h.broadcast("trend", b"t")
        assert drain(first)[-1] == sse_frame("trend", b"t", "e1-2")
        h.unsubscribe(first)
        h.to_user(1, "notification", b"n")
        h.broadcast("trend", b"t2")
        h.to_user(1, "timeline", b"2")
        again = h.subscribe(1, "e1-2")
        assert again.backlog == [
            sse_frame("notification", b"n", "e1-3"),
            sse_frame("trend", b"t2", "e1-4"),
            sse_frame("timeline", b"2", "e1-5"),
        ]
        assert again.resumed == "replayed"
        assert drain(again) == []  # nothing twice: the backlog is not also queued
        h.to_user(1, "timeline", b"3")
        assert drain(again) == [sse_frame("timeline", b"3", "e1-6")]
        # Nothing missed: an empty backlog.
        assert h.subscribe(1, "e1-6").backlog == []

    asyncio.run(scenario())


@pytest.mark.parametrize("last", ["e0-1", "e1-99", "e1-x", "garbage", ""])
def test_an_unknown_id_gets_resync(last: str) -> None:
    h = hub()
    h.subscribe(1)
    h.to_user(1, "timeline", b"1")
    [frame] = h.subscribe(1, last).backlog
    assert frame.startswith(b'event: resync\nid: e1-1\ndata: {"reason":"unknown_id"')


def test_an_evicted_id_gets_resync_too_old() -> None:
    h = hub(per_user=2)
    h.subscribe(1)
    for n in range(3):
        h.to_user(1, "timeline", str(n).encode())
    [frame] = h.subscribe(1, "e1-0").backlog
    assert b'"reason":"too_old"' in frame
    assert len(h.subscribe(1, "e1-1").backlog) == 2  # the two kept ones

    # The pod-wide cap evicts the oldest frames whoever they belong to.
    capped = hub(total=2)
    capped.subscribe(1)
    capped.subscribe(2)
    capped.to_user(1, "timeline", b"a")
    capped.to_user(2, "timeline", b"b")
    capped.to_user(2, "timeline", b"c")
    assert len(capped.replay) == 2
    assert b"too_old" in capped.subscribe(1, "e1-0").backlog[0]
    assert len(capped.subscribe(2, "e1-1").backlog) == 2


def test_a_user_away_longer_than_the_replay_window_gets_resync() -> None:
    h = hub(max_age_s=0.05)
    stream = h.subscribe(1)
    h.to_user(1, "timeline", b"1")
    h.unsubscribe(stream)
    time.sleep(0.1)
    # Forgotten while away: what was published meanwhile was not kept for them.
    assert h.to_user(1, "timeline", b"2") == 0
    assert b"too_old" in h.subscribe(1, "e1-1").backlog[0]
