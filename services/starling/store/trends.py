"""Trend state in the store: per-window hashtag counts (idempotent) and closed windows.

Counting is exact and idempotent: a tweet id is added to the window's `seen` set and its
hashtags counted only if it was not there, in one script, so redelivered or duplicated
enriched tweets never count twice, and the counts survive any restart of the service.

The same script keeps each window's counts ranked (`tr:rank:{window}`) and the latest
window counted (`tr:latest`), so the open window's leaders are one cheap read
(`current_leaders`): a live view has something to show long before the first window
closes and detection has the history it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import redis

from starling.store import keys

# KEYS: counts, seen, first-window, ranked counts, latest-window; ARGV: window start, ttl,
# then per tweet: tweet id, number of hashtags, the hashtags.
_COUNT = """
local window = tonumber(ARGV[1])
local i = 3
local added = 0
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    for j = 1, n do
      redis.call('HINCRBY', KEYS[1], ARGV[i + 1 + j], 1)
      redis.call('ZINCRBY', KEYS[4], 1, ARGV[i + 1 + j])
    end
    added = added + 1
  end
  i = i + 2 + n
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
local first = redis.call('GET', KEYS[3])
if not first or tonumber(first) > window then
  redis.call('SET', KEYS[3], window)
end
-- Late events for an older window must not move the live view back in time.
local latest = redis.call('GET', KEYS[5])
if not latest or tonumber(latest) < window then
  redis.call('SET', KEYS[5], window)
end
return added
"""

# Leaders shown for the open window when the caller does not say how many.
CURRENT_LEADERS = 10

# KEYS: window trends, closed set, current, open set; ARGV: window start, trends JSON, ttl.
_CLOSE = """
local window = tonumber(ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], window, window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', window - tonumber(ARGV[3]))
redis.call('SREM', KEYS[4], window)
local latest = redis.call('ZREVRANGE', KEYS[2], 0, 0)
if tonumber(latest[1]) == window then
  redis.call('SET', KEYS[3], ARGV[2])
end
return 1
"""


class TrendEntry(msgspec.Struct, frozen=True):
    """One trending hashtag of a window, as stored (and served by the gateway)."""

    hashtag: str
    count: int
    expected: float
    score: float
    rank: int
    window_start: int
    window_end: int


class Leader(msgspec.Struct, frozen=True):
    """A hashtag of the current (open) window and its count so far."""

    hashtag: str
    count: int


class CurrentWindow(msgspec.Struct, frozen=True):
    """The latest window counted, still open or not yet closed, and its top hashtags."""

    window_start: int
    leaders: list[Leader]


_entries_encoder = msgspec.json.Encoder()
_entries_decoder = msgspec.json.Decoder(list[TrendEntry])


class TrendStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        self.client = client
        self.retention_s = retention_s
        self._count = client.register_script(_COUNT)
        self._close = client.register_script(_CLOSE)

    def count(
        self, pipe: Any, window_start: int, tweets: Sequence[tuple[int, Sequence[str]]]
    ) -> None:
        """Queue counting `(tweet id, hashtags)` pairs into one window."""
        args: list[Any] = [window_start, self.retention_s]
        for tweet_id, hashtags in tweets:
            args.append(tweet_id)
            args.append(len(hashtags))
            args.extend(hashtags)
        self._count(
            keys=[
                keys.trend_counts(window_start),
                keys.trend_seen(window_start),
                keys.TRENDS_FIRST_WINDOW,
                keys.trend_rank(window_start),
                keys.TRENDS_LATEST_WINDOW,
            ],
            args=args,
            client=pipe,
        )

    def window_counts(self, windows: Iterable[int]) -> list[dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        for window in windows:
            pipe.hgetall(keys.trend_counts(window))
        return [
            {tag.decode(): int(count) for tag, count in result.items()} for result in pipe.execute()
        ]

    def first_window(self) -> int | None:
        value = self.client.get(keys.TRENDS_FIRST_WINDOW)
        return int(value) if value is not None else None

    def closed_windows(self) -> list[int]:
        members: Any = self.client.zrange(keys.TRENDS_CLOSED, 0, -1)
        return [int(member) for member in members]

    def close(self, window_start: int, entries: Sequence[TrendEntry]) -> None:
        self._close(
            keys=[
                keys.trend_window(window_start),
                keys.TRENDS_CLOSED,
                keys.TRENDS_CURRENT,
                keys.TRENDS_OPEN,
            ],
            args=[window_start, _entries_encoder.encode(list(entries)), self.retention_s],
        )

    def window_trends(self, window_start: int) -> list[TrendEntry] | None:
        raw = self.client.get(keys.trend_window(window_start))
        return _entries_decoder.decode(raw) if raw is not None else None

    def current(self) -> list[TrendEntry]:
        raw = self.client.get(keys.TRENDS_CURRENT)
        return _entries_decoder.decode(raw) if raw is not None else []


def current_leaders(client: redis.Redis, top_n: int = CURRENT_LEADERS) -> CurrentWindow | None:
    """The latest window counted and its `top_n` hashtags, most tweets first (ties by
    name), or None before anything was counted. Two reads, no script: the gateway calls
    it per request, and the window may roll over in between, which only shows the new
    window's first leaders (or none yet)."""
    latest = client.get(keys.TRENDS_LATEST_WINDOW)
    if latest is None:
        return None
    window = int(latest)
    # Scores are whole counts; ZREVRANGE breaks ties by reverse name, so re-sort by name.
    ranked: Any = client.zrevrange(keys.trend_rank(window), 0, top_n - 1, withscores=True)
    leaders = sorted(
        (Leader(tag.decode(), int(score)) for tag, score in ranked),
        key=lambda leader: (-leader.count, leader.hashtag),
    )
    return CurrentWindow(window_start=window, leaders=leaders)
