"""Synthetic traffic: a seeded model of users, follows, tweets, interactions and logins
(`model`), and the sinks that send it to Kafka or a file (`sink`, imported separately so
the model needs no Kafka client)."""

from starling.loadgen.model import (
    Burst,
    BurstTruth,
    FollowGraph,
    LoginAnomaly,
    LoginAnomalyKind,
    TrafficConfig,
    TrafficGenerator,
    UserProfile,
    handle_for,
    normalise_hashtag,
    preferential_attachment,
    user_id_for_handle,
)

__all__ = [
    "Burst",
    "BurstTruth",
    "FollowGraph",
    "LoginAnomaly",
    "LoginAnomalyKind",
    "TrafficConfig",
    "TrafficGenerator",
    "UserProfile",
    "handle_for",
    "normalise_hashtag",
    "preferential_attachment",
    "user_id_for_handle",
]
