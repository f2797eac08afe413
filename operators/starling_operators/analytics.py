"""The computations behind the DAGs, as pure functions over decoded events.

No Kafka, no store, no Airflow here: the DAG tasks read, call these, and write. Results
are deterministic (ties broken by id) so a re-run of an interval produces the same output.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
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


# Failed sign-ins (bad password, unknown account, rate-limited) that make a burst within
# FAILURE_BURST_WINDOW: on one account, and from one client address across accounts (a
# credential-stuffing run). The identity service refuses sign-in after 5 per account and
# 20 per address in 5 minutes; the wider window here still sees a slow attacker that stays
# under its limits. Overridable per deployment, see `LoginRules.from_env`.
FAILURE_BURST_THRESHOLD = 5
ADDRESS_FAILURE_BURST_THRESHOLD = 20
FAILURE_BURST_WINDOW = timedelta(minutes=10)

ACCOUNT_THRESHOLD_ENV = "STARLING_LOGIN_FAILURES_PER_ACCOUNT"
ADDRESS_THRESHOLD_ENV = "STARLING_LOGIN_FAILURES_PER_ADDRESS"
WINDOW_ENV = "STARLING_LOGIN_FAILURE_WINDOW_S"


@dataclass(frozen=True)
class LoginRules:
    """The failure-burst thresholds and their sliding window."""

    per_account: int = FAILURE_BURST_THRESHOLD
    per_address: int = ADDRESS_FAILURE_BURST_THRESHOLD
    window: timedelta = FAILURE_BURST_WINDOW

    def __post_init__(self) -> None:
        for name, value in (("per_account", self.per_account), ("per_address", self.per_address)):
            if value < 2:
                # One failure is a typo, not a burst.
                raise ValueError(f"{name} must be at least 2, got {value}")
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LoginRules:
        """The rules with any of the three environment overrides applied; a bad value
        fails the task with the variable's name rather than silently using a default."""

        def number(name: str, default: int) -> int:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {raw!r}") from None

        try:
            return cls(
                per_account=number(ACCOUNT_THRESHOLD_ENV, FAILURE_BURST_THRESHOLD),
                per_address=number(ADDRESS_THRESHOLD_ENV, ADDRESS_FAILURE_BURST_THRESHOLD),
                window=timedelta(
                    seconds=number(WINDOW_ENV, int(FAILURE_BURST_WINDOW.total_seconds()))
                ),
            )
        except ValueError as error:
            raise ValueError(f"login rules from the environment: {error}") from None


class LoginVerdict:
    NEW_COUNTRY = "new_country"
    FAILURE_BURST = "failure_burst"
    ADDRESS_BURST = "address_burst"


@dataclass(frozen=True)
class LoginAssessment:
    """What one login is flagged for. `reasons` concern the login's own account (empty for
    an unknown account); `address_targets` are the existing accounts the address burst this
    login completes or extends has aimed at, to be told of it (the login's own account
    among them when it is one)."""

    reasons: tuple[str, ...] = ()
    address_targets: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.reasons or self.address_targets)


def assess_login(
    login: UserLogin,
    known_countries: Collection[str],
    account_failures: int,
    earlier_address_failures: Sequence[int | None] = (),
    rules: LoginRules = LoginRules(),
) -> LoginAssessment:
    """Why this login (v1 or v2) is suspicious, from the history before it.

    * new country: a successful login from a country the user never logged in from
      successfully before (a user without history, or a login whose country is unknown,
      has nothing to compare);
    * failure burst: this failure is the `per_account`-th on its account within the
      window, counting it (`account_failures`): exactly at the crossing, so one burst
      raises one alarm however long it goes on;
    * address burst: this failure is the `per_address`-th from its client address within
      the window, whichever accounts they tried (`earlier_address_failures` lists the
      account of each earlier one, None for an unknown name). At the crossing every
      existing account tried is a target; afterwards each account the burst newly turns
      to is, so an account is told once per burst.
    """
    reasons = []
    if (
        login.success
        and login.country is not None
        and known_countries
        and login.country not in known_countries
    ):
        reasons.append(LoginVerdict.NEW_COUNTRY)
    if login.success:
        return LoginAssessment(tuple(reasons))
    if login.user_id is not None and account_failures == rules.per_account:
        reasons.append(LoginVerdict.FAILURE_BURST)
    targets = _address_burst_targets(login.user_id, earlier_address_failures, rules.per_address)
    if login.user_id is not None and login.user_id in targets:
        reasons.append(LoginVerdict.ADDRESS_BURST)
    return LoginAssessment(tuple(reasons), targets)


def _address_burst_targets(
    account: int | None, earlier: Sequence[int | None], threshold: int
) -> tuple[int, ...]:
    failures = len(earlier) + 1
    if failures < threshold:
        return ()
    if failures == threshold:
        tried = {a for a in earlier if a is not None}
        if account is not None:
            tried.add(account)
        return tuple(sorted(tried))
    if account is not None and account not in earlier:
        return (account,)
    return ()


def describe_login_alert(login: UserLogin, reasons: Collection[str]) -> str:
    """The notification text for the login's own account. Only what the service observed
    goes in (never the user agent or the name tried, which an attacker chooses)."""
    parts = []
    if LoginVerdict.NEW_COUNTRY in reasons:
        on = f" on {login.platform.value}" if login.platform is not None else ""
        parts.append(f"New sign-in from {login.country}{on}")
    if LoginVerdict.FAILURE_BURST in reasons:
        source = f"{login.country} ({login.ip})" if login.country is not None else login.ip
        parts.append(f"Several failed sign-in attempts from {source} in a few minutes")
    if LoginVerdict.ADDRESS_BURST in reasons:
        parts.append(_address_burst_text(login.ip))
    return "; ".join(parts) + ". If this wasn't you, change your password."


def describe_address_alert(login: UserLogin) -> str:
    """The notification text for another account targeted by the burst `login` belongs to."""
    return _address_burst_text(login.ip) + ". If this wasn't you, change your password."


def _address_burst_text(ip: str) -> str:
    return f"Many failed sign-in attempts from address {ip} on several accounts, yours among them"


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
