"""recommendations under `dag.test()`: the produced `Recommendation` events equal a reference
computed here, independently, from the generator's graph and events."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from starling.events import InteractionAction, Recommendation, RecommendationKind, decode_as
from starling.store.graph import apply_interaction, load_graph
from starling.topics import RECOMMENDATIONS
from tests.airflow.conftest import load_dag
from tests.airflow.traffic import (
    INTERVAL_END,
    TWEET_WEIGHTS,
    Traffic,
    in_interval,
    make_traffic,
    produce_traffic,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 20
HALF_LIFE = timedelta(hours=6)


def seed_store_graph(client: Any, traffic: Traffic) -> None:
    """What the notifier leaves in the store: the epoch graph plus every relation change."""
    graph = traffic.generator.graph
    load_graph(client, {user: graph.followers(user) for user in graph.user_ids})
    pipe = client.pipeline(transaction=False)
    for event in traffic.interactions:
        apply_interaction(pipe, event.action, event.actor_id, event.target_user_id)
    pipe.execute()


def reference_graph(traffic: Traffic) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    current = traffic.generator.current_graph()
    following = {user: set(current.following(user)) for user in current.user_ids}
    hidden: dict[int, set[int]] = defaultdict(set)
    blocked: set[tuple[int, int]] = set()
    muted: set[tuple[int, int]] = set()
    toggles = {
        InteractionAction.BLOCK: (blocked, True),
        InteractionAction.UNBLOCK: (blocked, False),
        InteractionAction.MUTE: (muted, True),
        InteractionAction.UNMUTE: (muted, False),
    }
    for event in traffic.interactions:
        if event.action in toggles:
            relation, on = toggles[event.action]
            pair = (event.actor_id, event.target_user_id)
            if on:
                relation.add(pair)
            else:
                relation.discard(pair)
    for actor, target in blocked | muted:
        hidden[actor].add(target)
    return following, hidden


def reference_who_to_follow(
    user: int, following: dict[int, set[int]], hidden: set[int]
) -> list[tuple[int, float]]:
    scores: dict[int, float] = defaultdict(float)
    for followee in following[user]:
        weight = 1 / math.log(2 + len(following[followee]))
        for candidate in following[followee]:
            if candidate != user and candidate not in following[user] and candidate not in hidden:
                scores[candidate] += weight
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:LIMIT]


def reference_tweets(
    traffic: Traffic, following: dict[int, set[int]], hidden: dict[int, set[int]]
) -> dict[int, list[tuple[int, float]]]:
    window_start = INTERVAL_END - timedelta(hours=24)
    tweets = {
        t.tweet_id: t for t in traffic.enriched if window_start <= t.event_time < INTERVAL_END
    }
    total: dict[int, float] = defaultdict(float)
    by_actor: dict[tuple[int, int], float] = defaultdict(float)
    for event in traffic.interactions:
        if event.tweet_id in tweets and event.action in TWEET_WEIGHTS:
            total[event.tweet_id] += TWEET_WEIGHTS[event.action]
            by_actor[(event.tweet_id, event.actor_id)] += TWEET_WEIGHTS[event.action]
    scored = {}
    for tweet_id, engagement in total.items():
        if engagement > 0:
            age = INTERVAL_END - tweets[tweet_id].event_time
            engagers = {a for (t, a), w in by_actor.items() if t == tweet_id and w > 0}
            scored[tweet_id] = (engagement * 2 ** (-(age / HALF_LIFE)), engagers)
    result = {}
    for user, followees in following.items():
        picks = []
        for tweet_id, (score, engagers) in scored.items():
            author = tweets[tweet_id].author_id
            if author == user or author in followees or author in hidden[user]:
                continue
            if user in engagers:
                continue
            picks.append((tweet_id, score * (1 + len(engagers & followees))))
        result[user] = sorted(picks, key=lambda kv: (-kv[1], kv[0]))[:LIMIT]
    return result


def test_recommendations_match_reference_and_rerun_emits_same_ids(
    starling_env: dict[str, str], redis_client: Any
) -> None:
    traffic = make_traffic(seed=11)
    produce_traffic(starling_env["bootstrap"], starling_env["prefix"], traffic)
    seed_store_graph(redis_client, traffic)

    run = load_dag("recommendations.py").test(logical_date=INTERVAL_END)
    assert run.state == "success"

    topic = starling_env["prefix"] + RECOMMENDATIONS
    produced = [
        decode_as(r.value or b"", Recommendation)
        for r in read_topic(starling_env["bootstrap"], topic)
    ]
    by_key = {(r.user_id, r.kind): r for r in produced}
    assert len(by_key) == len(produced)  # one per user and kind

    following, hidden = reference_graph(traffic)
    tweet_reference = reference_tweets(traffic, following, hidden)
    active = {e.actor_id for e in traffic.interactions if in_interval(e.event_time)}
    expected = {}
    for user in active:
        wtf = reference_who_to_follow(user, following, hidden[user])
        if wtf:
            expected[(user, RecommendationKind.WHO_TO_FOLLOW)] = wtf
        if tweet_reference[user]:
            expected[(user, RecommendationKind.TWEETS)] = tweet_reference[user]
    assert set(by_key) == set(expected)
    assert any(kind is RecommendationKind.TWEETS for _, kind in expected)
    for key, items in expected.items():
        got = by_key[key]
        assert got.event_time == INTERVAL_END
        assert [i.item_id for i in got.items] == [item for item, _ in items], key
        assert [i.score for i in got.items] == pytest.approx([s for _, s in items]), key

    # Same interval again: the same event ids (consumers dedupe), nothing else.
    rerun = load_dag("recommendations.py").test(logical_date=INTERVAL_END)
    assert rerun.state == "success"
    again = [
        decode_as(r.value or b"", Recommendation)
        for r in read_topic(starling_env["bootstrap"], topic)
    ]
    assert len(again) == 2 * len(produced)
    assert {r.event_id for r in again} == {r.event_id for r in produced}
