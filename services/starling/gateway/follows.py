"""Who the connected users follow, so one `live:tweets` message reaches the right streams.

Ingestion announces each batch of fanned-out tweets once, as (tweet id, author id), not
once per follower (fan-out is the hot path). Each gateway pod keeps, for the users it
has streams for, the accounts they follow, and the reverse map author -> connected
followers, so routing a tweet costs one dict lookup plus one step per connected follower
of its author, whatever the author's follower count.

A user's follows are loaded when their first stream opens and reloaded every
`follow_refresh_s` while connected (follows, unfollows, blocks and mutes made meanwhile
take effect then), by one script that returns at most `max_following` followed accounts,
already without those the user blocked or muted. Memory is bounded twice: per user by
that cap, and per pod by `max_entries` (author, connected follower) entries (~144 B
each): a load that would pass it keeps only what fits, so the pod's memory does not
depend on how many streams it serves or how many accounts their users follow. Everything
here runs on the event loop's thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import redis

from starling.store import keys

# KEYS: following, blocked, muted of one user; ARGV: the most accounts to return, the
# user's id, the blocked-set key prefix. SRANDMEMBER with a positive count returns the
# whole set when it is no larger than the count, else that many distinct members: bounded
# work and reply for any set size. An author who blocked the user is left out as well, as
# the timeline route does (starling.gateway.timeline); that key is built from the id read,
# which a single-node store allows.
_VISIBLE_FOLLOWING = """
local ids = redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[1]))
local visible = {}
for _, id in ipairs(ids) do
  if redis.call('SISMEMBER', KEYS[2], id) == 0 and redis.call('SISMEMBER', KEYS[3], id) == 0
     and redis.call('SISMEMBER', ARGV[3] .. id, ARGV[2]) == 0 then
    visible[#visible + 1] = id
  end
end
return visible
"""


class FollowingLoader:
    """Reads one user's followed accounts minus those the user blocked or muted and those
    who blocked the user (blocking call)."""

    def __init__(self, client: redis.Redis, max_following: int) -> None:
        self.max_following = max_following
        self._script = client.register_script(_VISIBLE_FOLLOWING)

    def __call__(self, user_id: int) -> list[int]:
        members: Any = self._script(
            keys=[keys.following(user_id), keys.blocked(user_id), keys.muted(user_id)],
            args=[self.max_following, user_id, keys.BLOCKED_PREFIX],
        )
        return [int(member) for member in members]


class FollowIndex:
    def __init__(self, max_entries: int, on_truncate: Callable[[], None] = lambda: None) -> None:
        self.max_entries = max_entries
        self._on_truncate = on_truncate
        self._streams: dict[int, int] = {}  # connected user -> open streams
        self._following: dict[int, frozenset[int]] = {}  # connected user -> authors
        self._readers: dict[int, set[int]] = {}  # author -> connected users following them
        # (author, connected follower) entries held: what the memory bound is about. A
        # plain int, so the metrics thread can read it while the loop changes the maps.
        self.entries = 0

    def open(self, user_id: int) -> bool:
        """A stream of `user_id` opened; True if it is their first (load their follows)."""
        count = self._streams.get(user_id, 0)
        self._streams[user_id] = count + 1
        return count == 0

    def close(self, user_id: int) -> bool:
        """A stream closed; True if it was their last (their entries are gone)."""
        count = self._streams.pop(user_id, 0) - 1
        if count > 0:
            self._streams[user_id] = count
            return False
        self._replace(user_id, frozenset())
        return True

    def connected(self, user_id: int) -> bool:
        return user_id in self._streams

    def following(self, user_id: int) -> frozenset[int]:
        return self._following.get(user_id, frozenset())

    def update(self, user_id: int, following: Iterable[int]) -> bool:
        """Replace whom `user_id` follows; False (nothing kept) if they are gone: a load
        that finishes after the last stream closed must not leave entries behind."""
        if user_id not in self._streams:
            return False
        # Their own tweets reach them anyway (see `route`): never twice.
        wanted = frozenset(following) - {user_id}
        room = self.max_entries - self.entries + len(self._following.get(user_id, ()))
        if len(wanted) > room:
            # Over the pod's budget: live tweets from only some of the accounts they
            # follow (their timeline itself is complete).
            wanted = frozenset(itertools.islice(wanted, max(room, 0)))
            self._on_truncate()
        self._replace(user_id, wanted)
        return True

    def route(self, tweets: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
        """(tweet id, author id) pairs -> the tweet ids each connected user should get:
        those of the accounts they follow, and their own (ingestion puts an author's tweet
        in the author's timeline too)."""
        routed: dict[int, list[int]] = {}
        readers_of = self._readers
        streams = self._streams
        for tweet_id, author in tweets:
            for reader in readers_of.get(author, ()):
                routed.setdefault(reader, []).append(tweet_id)
            if author in streams:
                routed.setdefault(author, []).append(tweet_id)
        return routed

    def _replace(self, user_id: int, following: frozenset[int]) -> None:
        previous = self._following.pop(user_id, frozenset())
        for author in previous - following:
            readers = self._readers[author]
            readers.discard(user_id)
            if not readers:
                del self._readers[author]
        for author in following - previous:
            self._readers.setdefault(author, set()).add(user_id)
        if following:
            self._following[user_id] = following
        self.entries += len(following) - len(previous)
