"""In-process fan-out of live updates to connected SSE clients.

One trends consumer and one store subscription per pod feed the hub; each connected
client has a bounded queue. Publishing never waits: a client whose queue is full is
disconnected (it gets a `close` event and reconnects), so one slow client can neither
block the pod nor make it buffer without bound. Every method runs on the event loop's
thread (feeds hand updates over with `call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import itertools
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
    ) -> None:
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.max_per_user = max_per_user
        self._on_drop = on_drop
        self._by_user: dict[int, dict[int, Subscription]] = {}
        self._all: dict[int, Subscription] = {}
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._all)

    def subscribe(self, user_id: int) -> Subscription:
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
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        key = subscription.key
        self._all.pop(key, None)
        of_user = self._by_user.get(subscription.user_id)
        if of_user is not None:
            of_user.pop(key, None)
            if not of_user:
                del self._by_user[subscription.user_id]

    def wants(self, user_id: int) -> bool:
        return user_id in self._by_user

    def broadcast(self, frame: bytes) -> int:
        """To every stream (trends); returns how many got it."""
        return self._offer(list(self._all.values()), frame)

    def to_user(self, user_id: int, frame: bytes) -> int:
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
