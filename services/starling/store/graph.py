"""The social graph in the store: follows (fan-out targets), blocks, mutes and handles.

It gets there two ways: `load_graph` writes a whole graph (the load generator's, for
tests and demos), and the notifier keeps it current from follow/unfollow/block/mute
interactions (`apply_interaction`), which are idempotent set operations.

Blocks and mutes are keyed by the blocker on the interactions topic, the interactions
they must stop by the other account, so the two arrive in any order (different
partitions, maybe different notifier replicas). So each block/mute change is also kept
with its event time in a small per-pair log (`keys.block_log`, `keys.mute_log`): the
current sets (`g:blocked`, `g:muted`, which the gateway reads) follow the change with the
latest event time, not the latest to arrive, and the notifier asks "was this account
blocked at the event time of this notification?" (`RELATION_AT_LUA`) instead of "is it
blocked now?". An unblock is a logged change too, so a like after an unblock is
delivered and one from before it (arriving late) is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from starling.events import InteractionAction
from starling.store import keys

_LOAD_CHUNK = 500  # users per pipeline round trip when bulk loading

# Changes kept per pair: enough for any realistic block/unblock flapping within the
# window in which a notification can still be undecided (the settle delay plus lag).
RELATION_LOG_LENGTH = 16

# Members are `on:{ms}` / `off:{ms}` scored by event time. At the same millisecond "on"
# sorts after "off", so reverse order puts the block first: a tie counts as blocked.
# KEYS: log, current set; ARGV: other account, 'on' or 'off', event time (ms), log length
_RELATION_CHANGE = """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2] .. ':' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
local latest = redis.call('ZREVRANGE', KEYS[1], 0, 0)[1]
if string.sub(latest, 1, 3) == 'on:' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""

# Lua for other scripts: was the relation on at event time `at` (ms)? The newest logged
# change at or before `at` decides; with no log at all (state written before logs
# existed, or by `load_graph`-style tools) the current set does, as before.
RELATION_AT_LUA = """
local function relation_at(log, current, other, at)
  if redis.call('EXISTS', log) == 1 then
    local change = redis.call('ZREVRANGEBYSCORE', log, at, '-inf', 'LIMIT', 0, 1)[1]
    return change ~= nil and string.sub(change, 1, 3) == 'on:'
  end
  return redis.call('SISMEMBER', current, other) == 1
end
"""

_RELATIONS = {
    InteractionAction.BLOCK: (keys.block_log, keys.blocked, "on"),
    InteractionAction.UNBLOCK: (keys.block_log, keys.blocked, "off"),
    InteractionAction.MUTE: (keys.mute_log, keys.muted, "on"),
    InteractionAction.UNMUTE: (keys.mute_log, keys.muted, "off"),
}


def load_graph(
    client: redis.Redis,
    followers_of: Mapping[int, Sequence[int]],
    handles: Mapping[str, int] | None = None,
) -> None:
    """Write follower sets (and the inverse following sets) and the handle directory."""
    following: dict[int, list[int]] = {}
    for followee, followers in followers_of.items():
        for follower in followers:
            following.setdefault(follower, []).append(followee)
    pipe = client.pipeline(transaction=False)
    commands = [(keys.followers(user), members) for user, members in followers_of.items()]
    commands += [(keys.following(user), members) for user, members in following.items()]
    for index, (key, members) in enumerate(commands, 1):
        if members:
            pipe.sadd(key, *members)
        if index % _LOAD_CHUNK == 0:
            pipe.execute()
    if handles:
        items = list(handles.items())
        for start in range(0, len(items), 10_000):
            chunk = items[start : start + 10_000]
            pipe.hset(keys.HANDLES, mapping={handle.lower(): user for handle, user in chunk})
    pipe.execute()


def load_loadgen_graph(client: redis.Redis, generator: Any) -> None:
    """Load a `starling.loadgen.TrafficGenerator`'s follow graph and handles."""
    graph = generator.graph
    load_graph(
        client,
        {user: graph.followers(user) for user in graph.user_ids},
        {profile.handle: profile.user_id for profile in generator.users},
    )


def followers_of(pipe: Any, user_ids: Iterable[int]) -> None:
    """Queue SMEMBERS of each user's followers (results in the same order)."""
    for user in user_ids:
        pipe.smembers(keys.followers(user))


def apply_interaction(
    pipe: Any,
    action: InteractionAction,
    actor: int,
    target: int,
    time_ms: int | None = None,
) -> bool:
    """Queue the graph change an interaction makes; False if it changes no relation.

    With `time_ms` (the event time) a block/mute change is logged and the current set
    follows the latest change by event time; without it (tools, tests) it is a plain set
    operation."""
    relation = _RELATIONS.get(action)
    if relation is not None and time_ms is not None:
        log_key, current_key, state = relation
        # A Script object is cheap (a SHA-1 of a short text); the pipeline loads it once.
        pipe.register_script(_RELATION_CHANGE)(
            keys=[log_key(actor, target), current_key(actor)],
            args=[target, state, time_ms, RELATION_LOG_LENGTH],
            client=pipe,
        )
        return True
    if action is InteractionAction.FOLLOW:
        pipe.sadd(keys.followers(target), actor)
        pipe.sadd(keys.following(actor), target)
    elif action is InteractionAction.UNFOLLOW:
        pipe.srem(keys.followers(target), actor)
        pipe.srem(keys.following(actor), target)
    elif action is InteractionAction.BLOCK:
        pipe.sadd(keys.blocked(actor), target)
    elif action is InteractionAction.UNBLOCK:
        pipe.srem(keys.blocked(actor), target)
    elif action is InteractionAction.MUTE:
        pipe.sadd(keys.muted(actor), target)
    elif action is InteractionAction.UNMUTE:
        pipe.srem(keys.muted(actor), target)
    else:
        return False
    return True
