"""The computations behind the DAGs, as pure functions over decoded events.

No Kafka, no store, no Airflow here: the DAG tasks read, call these, and write. Results
are deterministic (ties broken by id) so a re-run of an interval produces the same output.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from starling.events import InteractionAction, TweetEnriched, UserInteraction, UserLogin

# Engagement weights relative to a like, after Twitter's published home-ranking weights
# (a reply is worth ~27 likes, a retweet ~2). A quote is a retweet with a comment: weighted
# like a retweet. An unlike takes its like back.
ENGAGEMENT_WEIGHTS: Mapping[InteractionAction, float] = {
    InteractionAction.REPLY: 27.0,
    InteractionAction.RETWEET: 2.0,
    InteractionAction.QUOTE: 2.0,
    InteractionAction.LIKE: 1.0,
    InteractionAction.UNLIKE: -1.0,
}
DEFAULT_HALF_LIFE = timedelta(hours=6)
DEFAULT_LIMIT = 20


# ---- interaction analysis -----------------------------------------------------------------


@dataclass
class UserActivity:
    """What one user did (as actor) and received (as target) in an interval."""

    actions: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    engagement_given: float = 0.0
    engagement_received: float = 0.0
    distinct_targets: set[int] = field(default_factory=set)

    def as_fields(self) -> dict[str, str]:
        """Flat string fields for a store hash."""
        fields = {f"did.{action}": str(n) for action, n in sorted(self.actions.items())}
        fields.update({f"got.{action}": str(n) for action, n in sorted(self.received.items())})
        fields["engagement_given"] = repr(self.engagement_given)
        fields["engagement_received"] = repr(self.engagement_received)
        fields["distinct_targets"] = str(len(self.distinct_targets))
        return fields


@dataclass
class ActivityReport:
    users: dict[int, UserActivity]
    action_counts: Counter[str]
    tweet_engagement: dict[int, float]
    events: int

    @property
    def active_users(self) -> int:
        return sum(1 for activity in self.users.values() if activity.actions)

    @property
    def users_engaged(self) -> int:
        """Users whose tweets got a positive net engagement."""
        return sum(1 for activity in self.users.values() if activity.engagement_received > 0)

    @property
    def engaged_tweets(self) -> int:
        return sum(1 for score in self.tweet_engagement.values() if score > 0)

    @property
    def engagement_total(self) -> float:
        # float() so an empty interval gives 0.0, not the int 0, in the store and the event.
        return float(sum(self.tweet_engagement.values()))

    def top_tweets(self, limit: int = DEFAULT_LIMIT) -> list[tuple[int, float]]:
        ranked = sorted(self.tweet_engagement.items(), key=lambda item: (-item[1], item[0]))
        return [(tweet, score) for tweet, score in ranked if score > 0][:limit]

    def summary_fields(self) -> dict[str, str]:
        fields = {
            "events": str(self.events),
            "active_users": str(self.active_users),
            "users_engaged": str(self.users_engaged),
            "engaged_tweets": str(self.engaged_tweets),
            "engagement_total": repr(self.engagement_total),
        }
        fields.update({f"action.{a}": str(n) for a, n in sorted(self.action_counts.items())})
        return fields


def activity_report(interactions: Iterable[UserInteraction]) -> ActivityReport:
    users: defaultdict[int, UserActivity] = defaultdict(UserActivity)
    action_counts: Counter[str] = Counter()
    tweet_engagement: defaultdict[int, float] = defaultdict(float)
    events = 0
    for event in interactions:
        events += 1
        action = event.action.value
        weight = ENGAGEMENT_WEIGHTS.get(event.action, 0.0)
        actor, target = users[event.actor_id], users[event.target_user_id]
        action_counts[action] += 1
        actor.actions[action] += 1
        actor.distinct_targets.add(event.target_user_id)
        target.received[action] += 1
        if weight and event.tweet_id is not None:
            actor.engagement_given += weight
            target.engagement_received += weight
            tweet_engagement[event.tweet_id] += weight
    return ActivityReport(dict(users), action_counts, dict(tweet_engagement), events)


# ---- who to follow ------------------------------------------------------------------------


def who_to_follow(
    user: int,
    following: Mapping[int, Collection[int]],
    excluded: Collection[int] = (),
    limit: int = DEFAULT_LIMIT,
) -> list[tuple[int, float]]:
    """Friends of friends, each followee's vote weighted by how selective it is:
    score(c) = sum over u's followees f that follow c of 1 / log(2 + outdeg f).
    Drops u, accounts u already follows and `excluded` (blocked or muted by u)."""
    followees = following.get(user, ())
    skip = set(followees) | set(excluded) | {user}
    scores: defaultdict[int, float] = defaultdict(float)
    for followee in sorted(followees):
        second = following.get(followee, ())
        if not second:
            continue
        vote = 1.0 / math.log(2 + len(second))
        for candidate in second:
            if candidate not in skip:
                scores[candidate] += vote
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:limit]


# ---- tweet ranking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TweetCandidate:
    tweet_id: int
    author_id: int
    created: datetime
    score: float  # engagement with time decay, at the ranking time
    engagers: frozenset[int]  # users with positive engagement (social proof)


def rank_tweet_candidates(
    tweets: Iterable[TweetEnriched],
    interactions: Iterable[UserInteraction],
    now: datetime,
    half_life: timedelta = DEFAULT_HALF_LIFE,
) -> dict[int, TweetCandidate]:
    """Engagement-weighted score with exponential time decay: E * 2^(-age / half_life).
    Only tweets seen in `tweets` (the lookback's enriched tweets) are candidates: their
    author and creation time are known. Net-negative or zero engagement is dropped."""
    known = {tweet.tweet_id: tweet for tweet in tweets}
    engagement: defaultdict[int, float] = defaultdict(float)
    per_user: defaultdict[tuple[int, int], float] = defaultdict(float)
    for event in interactions:
        weight = ENGAGEMENT_WEIGHTS.get(event.action)
        if weight is None or event.tweet_id is None or event.tweet_id not in known:
            continue
        engagement[event.tweet_id] += weight
        per_user[(event.tweet_id, event.actor_id)] += weight
    engagers: defaultdict[int, set[int]] = defaultdict(set)
    for (tweet_id, actor), weight in per_user.items():
        if weight > 0:
            engagers[tweet_id].add(actor)
    candidates: dict[int, TweetCandidate] = {}
    for tweet_id, total in engagement.items():
        if total <= 0:
            continue
        tweet = known[tweet_id]
        age = max(timedelta(0), now - tweet.event_time)
        score = total * 2.0 ** (-(age / half_life))
        candidates[tweet_id] = TweetCandidate(
            tweet_id, tweet.author_id, tweet.event_time, score, frozenset(engagers[tweet_id])
        )
    return candidates


def recommend_tweets(
    user: int,
    candidates: Mapping[int, TweetCandidate],
    following: Mapping[int, Collection[int]],
    excluded_authors: Collection[int] = (),
    limit: int = DEFAULT_LIMIT,
) -> list[tuple[int, float]]:
    """Tweets for `user`'s timeline that fan-out does not already bring: not the user's own,
    not from accounts the user follows, blocks or mutes, not already engaged with. Each
    followee who engaged with a tweet adds its base score once more (social proof)."""
    followees = set(following.get(user, ()))
    skip_authors = followees | set(excluded_authors) | {user}
    scored = []
    for candidate in candidates.values():
        if candidate.author_id in skip_authors or user in candidate.engagers:
            continue
        proof = len(candidate.engagers & followees)
        scored.append((candidate.tweet_id, candidate.score * (1 + proof)))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:limit]


# ---- logins ------------------------------------------------------------------------------


FAILURE_BURST_THRESHOLD = 5
FAILURE_BURST_WINDOW = timedelta(minutes=10)


class LoginVerdict:
    NEW_COUNTRY = "new_country"
    FAILURE_BURST = "failure_burst"


def assess_login(
    login: UserLogin,
    known_countries: Collection[str],
    failures_in_window: int,
    threshold: int = FAILURE_BURST_THRESHOLD,
) -> list[str]:
    """Why this login is suspicious (empty if it is not).

    * new country: a successful login from a country the user never logged in from
      successfully before (a user without history has nothing to compare with);
    * failure burst: this failure is the `threshold`-th within the window, counting it:
      exactly at the crossing, so one burst raises one alarm however long it goes on.
    """
    reasons = []
    if login.success and known_countries and login.country not in known_countries:
        reasons.append(LoginVerdict.NEW_COUNTRY)
    if not login.success and failures_in_window == threshold:
        reasons.append(LoginVerdict.FAILURE_BURST)
    return reasons


def describe_login_alert(login: UserLogin, reasons: Collection[str]) -> str:
    parts = []
    if LoginVerdict.NEW_COUNTRY in reasons:
        parts.append(f"New sign-in from {login.country} on {login.platform.value}")
    if LoginVerdict.FAILURE_BURST in reasons:
        parts.append(
            f"Several failed sign-in attempts from {login.country} ({login.ip}) in a few minutes"
        )
    return "; ".join(parts) + ". If this wasn't you, change your password."


# ---- tweets: sentiment and hashtags -----------------------------------------------------------

SENTIMENT_DRIFT = 0.25


@dataclass
class TweetAggregates:
    tweets: int = 0
    hashtag_counts: Counter[str] = field(default_factory=Counter)
    hashtag_sentiment_sum: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )
    sentiment_sum: float = 0.0
    positive: int = 0
    negative: int = 0
    neutral: int = 0
    # tweet id -> re-scored sentiment, where it disagrees with what ingestion stored.
    drift: dict[int, float] = field(default_factory=dict)
    # tweets whose hashtag list was not case-folded or had duplicates.
    hashtags_cleaned: int = 0

    def add(self, tweet: TweetEnriched, rescored: float) -> None:
        self.tweets += 1
        self.sentiment_sum += rescored
        # VADER's customary thresholds for the compound score.
        if rescored >= 0.05:
            self.positive += 1
        elif rescored <= -0.05:
            self.negative += 1
        else:
            self.neutral += 1
        if abs(rescored - tweet.sentiment) > SENTIMENT_DRIFT:
            self.drift[tweet.tweet_id] = rescored
        tags = clean_hashtags(tweet.hashtags)
        if tags != list(tweet.hashtags):
            self.hashtags_cleaned += 1
        for tag in tags:
            self.hashtag_counts[tag] += 1
            self.hashtag_sentiment_sum[tag] += rescored

    def summary_fields(self) -> dict[str, str]:
        mean = self.sentiment_sum / self.tweets if self.tweets else 0.0
        return {
            "tweets": str(self.tweets),
            "sentiment_mean": repr(mean),
            "positive": str(self.positive),
            "negative": str(self.negative),
            "neutral": str(self.neutral),
            "sentiment_drift": str(len(self.drift)),
            "hashtags_cleaned": str(self.hashtags_cleaned),
            "distinct_hashtags": str(len(self.hashtag_counts)),
        }

    def hashtag_sentiment(self) -> dict[str, float]:
        return {
            tag: self.hashtag_sentiment_sum[tag] / count
            for tag, count in self.hashtag_counts.items()
        }


def clean_hashtags(tags: Iterable[str]) -> list[str]:
    """Case-folded, without '#', first occurrence kept: hashtags compare this way everywhere."""
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(tag.removeprefix("#").casefold(), None)
    return list(seen)
