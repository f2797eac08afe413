"""In-process fan-out of live updates to connected SSE clients.

One trends consumer and one store subscription per pod feed the hub; each connected
client has a bounded queue. Publishing never waits: a client whose queue is full is
disconnected (it gets a `close` event and reconnects), so one slow client can neither
block the pod nor make it buffer without bound. Every method runs on the event loop's
thread (feeds hand updates over with `call_soon_threadsafe`).

Resume (`Last-Event-ID`): every frame the hub sends gets an id `<epoch>-<seq>`, `epoch`
random per pod process and `seq` one pod-wide counter, so ids order each user's stream
and an id from another pod or an earlier process is recognised as unknown. The hub keeps
the recent frames (`ReplayBuffer`) of every user with an open stream and, for
`replay_s` after their last stream closed, of users who left; a reconnect with an id
gets what it missed from there before going live, or one `resync` frame when the frames
after its id are not all kept (unknown epoch, evicted, or the user was away too long).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable

import msgspec

_encoder = msgspec.json.Encoder()


def sse_frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE message. `data` must be one line (compact JSON is)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + data + b"\n\n"


SLOW_CLIENT_FRAME = sse_frame(
    "close",
    _encoder.encode(
        {"reason": "slow_consumer", "message": "too many updates waiting; reconnect and re-read"}
    ),
)
SHUTDOWN_FRAME = sse_frame(
    "close", _encoder.encode({"reason": "shutdown", "message": "the gateway is stopping"})
)
_CLOSING = frozenset({SLOW_CLIENT_FRAME, SHUTDOWN_FRAME})


def resync_frame(reason: str, message: str, event_id: str) -> bytes:
    return sse_frame("resync", _encoder.encode({"reason": reason, "message": message}), event_id)


class _Frames:
    """One user's kept frames (or the trends every stream gets), oldest first. Every
    frame of theirs with a seq above `floor` is in `frames`."""

    __slots__ = ("floor", "frames")

    def __init__(self, floor: int, max_frames: int) -> None:
        self.floor = floor
        self.frames: deque[tuple[int, bytes]] = deque(maxlen=max_frames)

    def add(self, seq: int, frame: bytes) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.floor = self.frames[0][0]
        self.frames.append((seq, frame))

    def evict(self, seq: int) -> None:
        """Forget the frame `seq` if it is still the oldest kept (global eviction)."""
        if self.frames and self.frames[0][0] == seq:
            self.frames.popleft()
            self.floor = seq

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        return [entry for entry in self.frames if entry[0] > seq]


class ReplayBuffer:
    """Recent frames per user, bounded three ways: `per_user` frames per user, `total`
    frames per pod (oldest evicted first, whoever they belong to) and `max_age_s`.
    Users are kept while they have a stream open and `max_age_s` after the last one
    closed, at most `max_gone` such absent users (the longest gone forgotten first)."""

    def __init__(
        self, per_user: int, total: int, max_age_s: float, max_gone: int, epoch: str | None = None
    ) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self.per_user = per_user
        self.total = total
        self.max_age_s = max_age_s
        self.max_gone = max_gone
        self.seq = 0
        self.trends = _Frames(0, per_user)
        self._users: dict[int, _Frames] = {}
        self._gone: dict[int, float] = {}  # user -> when kept until; insertion = close order
        self._order: deque[tuple[int, int | None, float]] = deque()  # (seq, user, monotonic)

    def __len__(self) -> int:
        return len(self._order)

    def keeps(self, user_id: int) -> bool:
        return user_id in self._users

    def next_id(self) -> tuple[int, str]:
        self.seq += 1
        return self.seq, f"{self.epoch}-{self.seq}"

    def position(self) -> str:
        """The id of "now": resuming from it replays whatever comes next."""
        return f"{self.epoch}-{self.seq}"

    def record(self, user_id: int | None, seq: int, frame: bytes) -> None:
        """Keep `frame` (for `user_id`, or for everyone when None)."""
        now = time.monotonic()
        kept = self.trends if user_id is None else self._users[user_id]
        kept.add(seq, frame)
        self._order.append((seq, user_id, now))
        self._evict(now)

    def opened(self, user_id: int) -> None:
        # Forget first whoever has been away too long: their resume must say too_old.
        self._expire(time.monotonic())
        self._gone.pop(user_id, None)
        if user_id not in self._users:
            self._users[user_id] = _Frames(self.seq, self.per_user)

    def closed(self, user_id: int) -> None:
        """Their last stream closed: keep their frames `max_age_s` longer."""
        self._gone[user_id] = time.monotonic() + self.max_age_s
        self._expire(time.monotonic())

    def replay(self, user_id: int, last_event_id: str) -> tuple[list[bytes], str | None]:
        """(frames after `last_event_id` in order, None) or ([], why not) when they are
        not all kept. Call with the user's stream already open (`opened`)."""
        epoch, _, seq_text = last_event_id.strip().partition("-")
        if (
            epoch != self.epoch
            or not seq_text.isascii()
            or not seq_text.isdigit()
            or len(seq_text) > 19
            or int(seq_text) > self.seq
        ):
            return [], "unknown_id"
        last = int(seq_text)
        kept = self._users[user_id]
        if last < kept.floor or last < self.trends.floor:
            return [], "too_old"
        merged = heapq.merge(kept.after(last), self.trends.after(last))
        return [frame for _seq, frame in merged], None

    def _evict(self, now: float) -> None:
        oldest = now - self.max_age_s
        while self._order and (len(self._order) > self.total or self._order[0][2] < oldest):
            seq, user_id, _at = self._order.popleft()
            kept = self.trends if user_id is None else self._users.get(user_id)
            if kept is not None:
                kept.evict(seq)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._gone:
            user_id, until = next(iter(self._gone.items()))
            if until > now and len(self._gone) <= self.max_gone:
                return
            del self._gone[user_id]
            self._users.pop(user_id, None)


class HubFullError(Exception):
    """The pod holds as many streams as it is allowed to."""


class UserStreamsFullError(HubFullError):
    """This user already holds as many streams as one user may."""


class Subscription:
    def __init__(self, key: int, user_id: int, queue_size: int) -> None:
        self.key = key
        self.user_id = user_id
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.closed = False
        # Frames to send before the live ones: what a resumed client missed, or `resync`.
        self.backlog: list[bytes] = []
        # With a last event id: "replayed", or why not ("unknown_id", "too_old").
        self.resumed: str | None = None

    def offer(self, frame: bytes) -> bool:
        """Queue `frame`; False (and the subscription closed) if the client is too slow."""
        if self.closed:
            return True
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            self.close(SLOW_CLIENT_FRAME)
            return False

    def close(self, frame: bytes) -> None:
        """Drop what is queued and leave only the closing frame."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(frame)

    @staticmethod
    def is_closing(frame: bytes) -> bool:
        return frame in _CLOSING


class Hub:
    def __init__(
        self,
        queue_size: int,
        max_streams: int,
        on_drop: Callable[[], None] = lambda: None,
        max_per_user: int | None = None,
        replay: ReplayBuffer | None = None,
    ) -> None:
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.max_per_user = max_per_user
        self._on_drop = on_drop
        self._by_user: dict[int, dict[int, Subscription]] = {}
        self._all: dict[int, Subscription] = {}
        self._ids = itertools.count()
        # (Not `replay or ...`: an empty buffer is falsy.)
        self.replay = (
            replay
            if replay is not None
            else ReplayBuffer(per_user=256, total=50_000, max_age_s=120.0, max_gone=max_streams)
        )

    def __len__(self) -> int:
        return len(self._all)

    def subscribe(self, user_id: int, last_event_id: str | None = None) -> Subscription:
        """A new stream of `user_id`; with `last_event_id` its `backlog` holds what the
        client missed since (or a `resync` frame). Synchronous, so no frame published
        meanwhile can fall between the backlog and the queue."""
        if len(self._all) >= self.max_streams:
            raise HubFullError(f"this gateway pod already serves {len(self._all)} streams")
        open_streams = len(self._by_user.get(user_id, ()))
        if self.max_per_user is not None and open_streams >= self.max_per_user:
            raise UserStreamsFullError(
                f"user {user_id} already has {open_streams} open streams (at most"
                f" {self.max_per_user}); close one first"
            )
        subscription = Subscription(next(self._ids), user_id, self.queue_size)
        self._all[subscription.key] = subscription
        self._by_user.setdefault(user_id, {})[subscription.key] = subscription
        self.replay.opened(user_id)
        if last_event_id is None:
            # The position of "now" (taken with the subscription, so nothing falls in
            # between): even a client that got no frame yet resumes from here.
            subscription.backlog = [self.position_frame()]
        else:
            frames, problem = self.replay.replay(user_id, last_event_id)
            subscription.resumed = problem or "replayed"
            if problem is None:
                subscription.backlog = frames
            else:
                subscription.backlog = [self._resync(problem)]
        return subscription

    def position_frame(self) -> bytes:
        """An `id:` with no event: the client's position is "now" even before any frame
        arrives, so the browser's own reconnect resumes from here."""
        return f"id: {self.replay.position()}\n\n".encode()

    def _resync(self, problem: str) -> bytes:
        message = (
            "this id is not from this gateway process (another pod, or it restarted): re-read"
            if problem == "unknown_id"
            else "updates after this id are no longer kept: re-read"
        )
        # Carries the current position: resuming from it later replays from here.
        return resync_frame(problem, message, self.replay.position())

    def unsubscribe(self, subscription: Subscription) -> None:
        key = subscription.key
        self._all.pop(key, None)
        of_user = self._by_user.get(subscription.user_id)
        if of_user is not None:
            of_user.pop(key, None)
            if not of_user:
                del self._by_user[subscription.user_id]
                self.replay.closed(subscription.user_id)

    def wants(self, user_id: int) -> bool:
        return user_id in self._by_user

    def broadcast(self, event: str, data: bytes) -> int:
        """To every stream (trends); returns how many got it."""
        seq, event_id = self.replay.next_id()
        frame = sse_frame(event, data, event_id)
        self.replay.record(None, seq, frame)
        return self._offer(list(self._all.values()), frame)

    def to_user(self, user_id: int, event: str, data: bytes) -> int:
        """To `user_id`'s streams, and kept for their resume while the hub keeps them."""
        if not self.replay.keeps(user_id):
            return 0
        seq, event_id = self.replay.next_id()
        frame = sse_frame(event, data, event_id)
        self.replay.record(user_id, seq, frame)
        return self._offer(list(self._by_user.get(user_id, {}).values()), frame)

    def close_all(self) -> None:
        for subscription in list(self._all.values()):
            subscription.close(SHUTDOWN_FRAME)

    def _offer(self, subscriptions: list[Subscription], frame: bytes) -> int:
        delivered = 0
        for subscription in subscriptions:
            if subscription.offer(frame):
                delivered += 1
            else:
                self._on_drop()
        return delivered
