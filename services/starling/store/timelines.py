"""Home timelines: capped sorted sets of tweet ids, newest (highest id) first.

Writes are idempotent and order-independent: ZADD of a tweet already present changes
nothing, and trimming keeps the `cap` highest ids, so a timeline's content is the top
`cap` of everything ever added, however often and in whatever order it was added.
Scores are tweet ids as doubles; ids that collide in a double's 53 bits tie on score and
are ordered by member, which for equal-length decimal ids is numeric order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis

from starling.store import keys

DEFAULT_CAP = 800  # Twitter kept about 800 entries per home timeline

# KEYS: timelines; ARGV: cap, then the tweet id (score and member) to add to each.
_FAN_OUT = """
local cap = tonumber(ARGV[1])
local id = ARGV[2]
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, id, id)
  if redis.call('ZCARD', key) > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
  end
end
return #KEYS
"""

# KEYS[1]: one timeline; ARGV: cap, then tweet ids to merge into it.
_MERGE = """
local cap = tonumber(ARGV[1])
local key = KEYS[1]
for i = 2, #ARGV do
  redis.call('ZADD', key, ARGV[i], ARGV[i])
end
if redis.call('ZCARD', key) > cap then
  redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
end
return #ARGV - 1
"""


class TimelineStore:
    def __init__(self, client: redis.Redis, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise ValueError(f"timeline cap must be >= 1, got {cap}")
        self.client = client
        self.cap = cap
        self._fan_out = client.register_script(_FAN_OUT)
        self._merge = client.register_script(_MERGE)

    def fan_out(self, pipe: Any, tweet_id: int, user_ids: Iterable[int | bytes]) -> None:
        """Queue adding `tweet_id` to each user's timeline (one script call per tweet).
        User ids may be ints or the bytes a follower set returns."""
        key_of = keys.timeline_of_member
        timeline_keys = [key_of(user) for user in user_ids]
        if timeline_keys:
            self._fan_out(keys=timeline_keys, args=[self.cap, tweet_id], client=pipe)

    def merge(self, pipe: Any, user_id: int, tweet_ids: Sequence[int]) -> None:
        """Queue merging `tweet_ids` into one user's timeline."""
        if tweet_ids:
            self._merge(keys=[keys.timeline(user_id)], args=[self.cap, *tweet_ids], client=pipe)

    def timeline(self, user_id: int, limit: int = 50, before: int | None = None) -> list[int]:
        """Newest first; `before` pages back from a tweet id (exclusive)."""
        high: str | int = f"({before}" if before is not None else "+inf"
        ids: Any = self.client.zrevrangebyscore(keys.timeline(user_id), high, "-inf", 0, limit)
        return [int(member) for member in ids]
