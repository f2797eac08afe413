"""The social graph in the store: follows (fan-out targets), blocks, mutes and handles.

It gets there two ways: `load_graph` writes a whole graph (the load generator's, for
tests and demos), and the notifier keeps it current from follow/unfollow/block/mute
interactions (`apply_interaction`), which are idempotent set operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from starling.events import InteractionAction
from starling.store import keys

_LOAD_CHUNK = 500  # users per pipeline round trip when bulk loading


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


def apply_interaction(pipe: Any, action: InteractionAction, actor: int, target: int) -> bool:
    """Queue the graph change an interaction makes; False if it changes no relation."""
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
