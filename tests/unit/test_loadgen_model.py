"""The synthetic traffic model: reproducible, valid, and shaped like the brief says
(power-law follows, Zipf hashtags, bursts at their times, popularity-biased interactions,
login anomalies with ground truth)."""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest

from starling.events import (
    Event,
    InteractionAction,
    LoginOutcome,
    TweetCreated,
    UserInteraction,
    UserLogin,
    decode,
    encode,
)
from starling.loadgen import (
    Burst,
    LoginAnomalyKind,
    TrafficConfig,
    TrafficGenerator,
    handle_for,
    preferential_attachment,
    user_id_for_handle,
    vocabulary,
)
from starling.loadgen.model import SNOWFLAKE_EPOCH_MS

pytestmark = pytest.mark.unit

EVENTS = 60_000
BURSTS = (Burst("eclipse", 20, 10, 50), Burst("solarflare", 40, 5, 80))
CONFIG = TrafficConfig(seed=42, users=5000, bursts=BURSTS)
HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")


@pytest.fixture(scope="module")
def generator() -> TrafficGenerator:
    return TrafficGenerator(CONFIG)


@pytest.fixture(scope="module")
def stream(generator: TrafficGenerator) -> list[Event]:
    return list(generator.events(EVENTS))


@pytest.fixture(scope="module")
def tweets(stream: list[Event]) -> list[TweetCreated]:
    return [event for event in stream if isinstance(event, TweetCreated)]


def hashtags_of(tweet: TweetCreated) -> list[str]:
    return [word[1:] for word in tweet.text.split() if word.startswith("#")]


def mentions_of(tweet: TweetCreated) -> list[str]:
    return [word[1:] for word in tweet.text.split() if word.startswith("@")]


def loglog_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return covariance / sum((x - mean_x) ** 2 for x in xs)


# ---- reproducibility and validity ---------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_graph() -> None:
    first, second = TrafficGenerator(CONFIG), TrafficGenerator(CONFIG)
    assert [encode(e) for e in first.events(5000)] == [encode(e) for e in second.events(5000)]
    assert list(first.graph.edges()) == list(second.graph.edges())
    assert first.users == second.users


def test_different_seed_gives_different_events() -> None:
    other = TrafficConfig(seed=43, users=5000, bursts=BURSTS)
    first = [encode(e) for e in TrafficGenerator(CONFIG).events(1000)]
    second = [encode(e) for e in TrafficGenerator(other).events(1000)]
    assert first != second
    assert not set(first) & set(second)


def test_continuing_a_stream_equals_drawing_it_at_once() -> None:
    whole = [encode(e) for e in TrafficGenerator(CONFIG).events(3000)]
    split = TrafficGenerator(CONFIG)
    parts = [encode(e) for e in split.events(1000)] + [encode(e) for e in split.events(2000)]
    assert parts == whole
    assert split.events_generated == 3000


def test_every_event_round_trips_through_the_validating_decoder(stream: list[Event]) -> None:
    for event in stream:
        assert decode(encode(event)) == event


def test_event_ids_are_unique_version_4_uuids(stream: list[Event]) -> None:
    ids = [event.event_id for event in stream]
    assert len(set(ids)) == len(ids)
    assert {event_id.version for event_id in ids} == {4}


def test_event_time_follows_the_simulated_clock(
    generator: TrafficGenerator, stream: list[Event]
) -> None:
    step = timedelta(seconds=1 / CONFIG.events_per_second)
    for index in (0, 1, 999, 1000, EVENTS - 1):
        expected = CONFIG.epoch + index * step
        assert abs(stream[index].event_time - expected) < timedelta(microseconds=2)
        assert generator.time_of(index) == stream[index].event_time
    times = [event.event_time for event in stream]
    assert times == sorted(times)


def test_mix_matches_the_configured_ratio(stream: list[Event]) -> None:
    kinds: Counter[type] = Counter(type(event) for event in stream)
    weights = dict(zip((TweetCreated, UserInteraction, UserLogin), CONFIG.mix, strict=True))
    total = sum(CONFIG.mix)
    for kind, weight in weights.items():
        assert kinds[kind] / EVENTS == pytest.approx(weight / total, abs=0.015)


def test_tweet_ids_are_snowflakes_of_the_event_time(tweets: list[TweetCreated]) -> None:
    ids = [tweet.tweet_id for tweet in tweets]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for tweet in tweets[:2000]:
        unix_ms = (tweet.tweet_id >> 22) + SNOWFLAKE_EPOCH_MS
        assert unix_ms == int(tweet.event_time.timestamp() * 1000 + 1e-6)


# ---- users and the follow graph -----------------------------------------------------------


def test_handles_follow_the_documented_convention() -> None:
    assert handle_for(42) == "u42"
    assert user_id_for_handle("u42") == 42
    assert user_id_for_handle("@u42") == 42
    for bad in ("x42", "u", "u0", "u04", "u4x"):
        assert user_id_for_handle(bad) is None
    assert HANDLE.match(handle_for(10**14 - 1))  # the largest allowed user id


def test_mentions_name_real_users_other_than_the_author(tweets: list[TweetCreated]) -> None:
    mentions = 0
    for tweet in tweets:
        for handle in mentions_of(tweet):
            assert HANDLE.match(handle)
            user_id = user_id_for_handle(handle)
            assert user_id is not None
            assert 1 <= user_id <= CONFIG.users
            if tweet.reply_to_user_id != user_id:
                assert user_id != tweet.author_id
            mentions += 1
    assert mentions > len(tweets) * 0.3


def test_follow_graph_is_consistent(generator: TrafficGenerator) -> None:
    graph = generator.graph
    assert graph.following(1) == ()
    for user_id in (2, 10, 4000):
        followees = graph.following(user_id)
        assert len(followees) == min(CONFIG.follows_per_user, user_id - 1)
        assert all(followee < user_id for followee in followees)  # earlier users only
        for followee in followees:
            assert user_id in graph.followers(followee)
            assert graph.is_following(user_id, followee)
    assert graph.edge_count == sum(graph.follower_counts())


def test_follower_counts_are_heavy_tailed() -> None:
    graph = preferential_attachment(5000, 3, random.Random(7))
    counts = sorted(graph.follower_counts(), reverse=True)
    mean = sum(counts) / len(counts)
    # With attachment weight followers+1 and m=3, theory says 4/7 of users are never
    # followed (so the median is 0) and the in-degree tail is P(k) ~ k^-(2 + 1/3).
    assert sum(1 for c in counts if c == 0) / len(counts) == pytest.approx(4 / 7, abs=0.03)
    assert counts[0] >= 20 * mean
    assert sum(counts[:50]) >= 0.3 * sum(counts)  # top 1% hold a large share of follows
    # Tail exponent of the CCDF, P(K >= k) ~ k^-alpha with alpha = 1 + 1/m = 1.33.
    values = [c + 1 for c in counts]
    tail = 250
    hill = tail / sum(math.log(values[i] / values[tail]) for i in range(tail))
    assert 0.9 <= hill <= 1.7
    ccdf = [(k, sum(1 for v in values if v >= k) / len(values)) for k in (4, 8, 16, 32, 64, 128)]
    assert -1.7 <= loglog_slope(ccdf) <= -0.9


def test_current_graph_applies_the_generated_follows(
    generator: TrafficGenerator, stream: list[Event]
) -> None:
    following = {user: set(generator.graph.following(user)) for user in generator.graph.user_ids}
    for event in stream:
        if isinstance(event, UserInteraction):
            if event.action is InteractionAction.FOLLOW:
                assert event.target_user_id not in following[event.actor_id]
                following[event.actor_id].add(event.target_user_id)
            elif event.action is InteractionAction.UNFOLLOW:
                assert event.target_user_id in following[event.actor_id]
                following[event.actor_id].remove(event.target_user_id)
    current = generator.current_graph()
    assert {user: set(current.following(user)) for user in current.user_ids} == following


# ---- tweets, hashtags and bursts ----------------------------------------------------------


def test_hashtags_are_zipf_distributed(tweets: list[TweetCreated]) -> None:
    counts = Counter(
        tag
        for tweet in tweets
        for tag in hashtags_of(tweet)
        if tag not in {"eclipse", "solarflare"}
    )
    top = [count for _, count in counts.most_common(20)]
    slope = loglog_slope([(rank, count) for rank, count in enumerate(top, start=1)])
    assert slope == pytest.approx(-CONFIG.zipf_exponent, abs=0.2)


def test_bursts_are_at_their_seeded_times(
    generator: TrafficGenerator, tweets: list[TweetCreated]
) -> None:
    assert [(b.hashtag, b.start, b.end) for b in generator.bursts] == [
        (
            b.hashtag,
            CONFIG.epoch + timedelta(seconds=b.start_s),
            CONFIG.epoch + timedelta(seconds=b.end_s),
        )
        for b in BURSTS
    ]
    for truth in generator.bursts:
        # A burst tag is otherwise rare: not one of the steady Zipf tags.
        assert truth.hashtag not in generator.hashtags
        inside = [t for t in tweets if truth.contains(t.event_time)]
        outside = [t for t in tweets if not truth.contains(t.event_time)]
        hits_inside = sum(truth.hashtag in hashtags_of(t) for t in inside)
        hits_outside = sum(truth.hashtag in hashtags_of(t) for t in outside)
        baseline = truth.baseline_per_tweet
        assert hits_inside / len(inside) >= truth.multiplier / 2 * baseline
        # Not elevated elsewhere: at most a few times its baseline outside the window.
        assert hits_outside <= 3 * baseline * len(outside) + 5
        # And no 5-second bucket outside the window comes close to the burst rate.
        buckets: Counter[int] = Counter()
        for tweet in outside:
            if truth.hashtag in hashtags_of(tweet):
                buckets[int((tweet.event_time - CONFIG.epoch).total_seconds() // 5)] += 1
        assert max(buckets.values(), default=0) < hits_inside / (truth.end - truth.start).seconds


def test_replies_and_quotes_refer_to_earlier_tweets(stream: list[Event]) -> None:
    authors: dict[int, int] = {}
    replies = quotes = 0
    # The last event is left out: its companion would be the first event of the next draw.
    for position, event in enumerate(stream[:-1]):
        if not isinstance(event, TweetCreated):
            continue
        if event.reply_to_tweet_id is not None:
            assert authors[event.reply_to_tweet_id] == event.reply_to_user_id
            assert event.text.startswith("@" + handle_for(event.reply_to_user_id or 0))
            companion = stream[position + 1]
            assert isinstance(companion, UserInteraction)
            assert (companion.action, companion.actor_id, companion.tweet_id) == (
                InteractionAction.REPLY,
                event.author_id,
                event.reply_to_tweet_id,
            )
            assert companion.target_user_id == event.reply_to_user_id
            replies += 1
        if event.quote_of_tweet_id is not None:
            assert event.quote_of_tweet_id in authors
            companion = stream[position + 1]
            assert isinstance(companion, UserInteraction)
            assert companion.action is InteractionAction.QUOTE
            assert companion.target_user_id == authors[event.quote_of_tweet_id]
            quotes += 1
        authors[event.tweet_id] = event.author_id
    tweets = len(authors)
    assert replies / tweets == pytest.approx(CONFIG.reply_fraction, abs=0.02)
    assert quotes / tweets == pytest.approx(CONFIG.quote_fraction, abs=0.015)


# ---- interactions -------------------------------------------------------------------------


def test_interactions_are_consistent(stream: list[Event]) -> None:
    authors: dict[int, int] = {}
    blocked: set[tuple[int, int]] = set()
    actions: Counter[InteractionAction] = Counter()
    for event in stream:
        if isinstance(event, TweetCreated):
            authors[event.tweet_id] = event.author_id
        elif isinstance(event, UserInteraction):
            actions[event.action] += 1
            pair = (event.actor_id, event.target_user_id)
            if event.tweet_id is not None:
                assert authors[event.tweet_id] == event.target_user_id
            else:
                assert event.actor_id != event.target_user_id
            if event.action is InteractionAction.BLOCK:
                blocked.add(pair)
            elif event.action is InteractionAction.UNBLOCK:
                assert pair in blocked
                blocked.remove(pair)
    assert set(actions) == set(InteractionAction)


def test_interactions_favour_popular_authors_and_recent_tweets(
    generator: TrafficGenerator, stream: list[Event], tweets: list[TweetCreated]
) -> None:
    counts = generator.graph.follower_counts()
    by_popularity = sorted(generator.graph.user_ids, key=lambda user: -counts[user - 1])
    top_decile = set(by_popularity[: len(by_popularity) // 10])
    engaged = [
        event
        for event in stream
        if isinstance(event, UserInteraction)
        and event.action in {InteractionAction.LIKE, InteractionAction.RETWEET}
    ]
    engagement_share = sum(e.target_user_id in top_decile for e in engaged) / len(engaged)
    tweet_share = sum(t.author_id in top_decile for t in tweets) / len(tweets)
    assert engagement_share >= 0.3
    assert engagement_share >= 1.4 * tweet_share

    # Ages (in tweets) of liked tweets: mostly recent, not spread over the whole history.
    order = {tweet.tweet_id: position for position, tweet in enumerate(tweets)}
    seen = 0
    ages = []
    for event in stream:
        if isinstance(event, TweetCreated):
            seen += 1
        elif isinstance(event, UserInteraction) and event.action is InteractionAction.LIKE:
            ages.append(seen - 1 - order[event.tweet_id or 0])
    ages.sort()
    assert ages[len(ages) // 2] < 0.05 * len(tweets)


# ---- logins -------------------------------------------------------------------------------


def test_login_anomalies_are_present_and_match_ground_truth(
    generator: TrafficGenerator, stream: list[Event]
) -> None:
    logins = {event.event_id: event for event in stream if isinstance(event, UserLogin)}
    anomalies = generator.login_anomalies
    kinds = Counter(anomaly.kind for anomaly in anomalies)
    expected_new_country = CONFIG.new_country_login_rate * len(logins)
    assert 0.5 * expected_new_country <= kinds[LoginAnomalyKind.NEW_COUNTRY]
    assert kinds[LoginAnomalyKind.NEW_COUNTRY] <= 1.5 * expected_new_country
    assert kinds[LoginAnomalyKind.FAILURE_BURST] >= 3

    anomalous: set[uuid.UUID] = set()
    low, high = CONFIG.failure_burst_attempts
    for anomaly in anomalies:
        home = generator.user(anomaly.user_id)
        events = [logins[event_id] for event_id in anomaly.event_ids]
        anomalous.update(anomaly.event_ids)
        assert anomaly.country != home.country
        assert all(e.user_id == anomaly.user_id and e.country == anomaly.country for e in events)
        assert (anomaly.first_time, anomaly.last_time) == (
            events[0].event_time,
            events[-1].event_time,
        )
        if anomaly.kind is LoginAnomalyKind.NEW_COUNTRY:
            assert [e.success for e in events] == [True]
            assert events[0].device_id != home.device_id
        else:
            assert not any(e.success for e in events)
            assert {e.ip for e in events} == {anomaly.ip}
            # A burst still in progress at the end of the stream may be short.
            assert len(events) <= high
            if anomaly is not anomalies[-1]:
                assert len(events) >= low

    ordinary = [login for event_id, login in logins.items() if event_id not in anomalous]
    for login in ordinary:
        home = generator.user(login.user_id)
        assert (login.country, login.device_id, login.ip) == (home.country, home.device_id, home.ip)
    failures = sum(not login.success for login in ordinary) / len(ordinary)
    assert failures == pytest.approx(CONFIG.login_failure_rate, abs=0.01)


def test_logins_are_what_the_identity_service_emits(
    generator: TrafficGenerator, stream: list[Event]
) -> None:
    logins = {event.event_id: event for event in stream if isinstance(event, UserLogin)}
    for login in logins.values():
        assert login.schema_version == 2
        assert login.user_id is not None and login.username == handle_for(login.user_id)
        assert login.success == (login.outcome is LoginOutcome.SUCCEEDED)
        assert login.user_agent and login.country is not None
    ordinary_failures = [
        login
        for login in logins.values()
        if not login.success and login.user_agent != vocabulary.ATTACKER_USER_AGENT
    ]
    assert ordinary_failures
    assert {login.outcome for login in ordinary_failures} == {LoginOutcome.BAD_PASSWORD}
    bursts = [a for a in generator.login_anomalies if a.kind is LoginAnomalyKind.FAILURE_BURST]
    long_bursts = [b for b in bursts if len(b.event_ids) > 5]
    assert long_bursts
    for burst in bursts:
        outcomes = [logins[event_id].outcome for event_id in burst.event_ids]
        # The service refuses an account's sign-in after 5 attempts: the rest are limited.
        assert outcomes[:5] == [LoginOutcome.BAD_PASSWORD] * min(5, len(outcomes))
        assert outcomes[5:] == [LoginOutcome.RATE_LIMITED] * (len(outcomes) - 5)
        assert {logins[i].user_agent for i in burst.event_ids} == {vocabulary.ATTACKER_USER_AGENT}


# ---- configuration ------------------------------------------------------------------------


def test_burst_spec_parsing() -> None:
    assert Burst.parse("#Eclipse:60:30:40") == Burst("eclipse", 60.0, 30.0, 40.0)
    for bad, message in (
        ("eclipse:60:30", "TAG:START:DURATION:MULT"),
        ("eclipse:sixty:30:40", "must be numbers"),
        ("eclipse:60:0:40", "duration must be > 0"),
        ("eclipse:-1:10:40", "start must be >= 0"),
        ("eclipse:60:30:0.5", "multiplier must be >= 1"),
        ("solar flare:60:30:4", "lower-case letters"),
        (":60:30:4", "lower-case letters"),
    ):
        with pytest.raises(ValueError, match=message):
            Burst.parse(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("users", 1),
        ("events_per_second", 0),
        ("mix", (0, 0, 0)),
        ("reply_fraction", 1.5),
        ("zipf_exponent", 0),
        ("interaction_weights", ((InteractionAction.REPLY, 1.0),)),
        ("bursts", tuple(Burst("x" * 99 + str(n), 0, 1, 2) for n in range(3))),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TrafficConfig.{field}"):
        TrafficConfig(**{field: value})  # type: ignore[arg-type]


def test_tiny_graphs_still_generate_valid_events() -> None:
    generator = TrafficGenerator(TrafficConfig(seed=1, users=2, hashtag_vocabulary=1))
    for event in generator.events(3000):
        assert decode(encode(event)) == event
