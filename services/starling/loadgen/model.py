"""A seeded model of a small Twitter: users, a follow graph, and a stream of events.

Everything here is pure and reproducible: the same `TrafficConfig` (seed included) gives
the same users, the same follow graph and the same events, byte for byte once encoded.
All randomness comes from one `random.Random(seed)`; event ids are random UUIDs drawn
from it and event times come from a simulated clock, so nothing depends on the machine.

Simulated time: event number i (counting from 0) happens at
`epoch + i / events_per_second`, whatever the wall-clock speed it is produced at. Bursts
are therefore at their configured times in *event time*, which is what windowed
consumers (trends) see.

Conventions other services rely on:

* user ids are 1..users; the handle of user `n` is `u<n>` (`handle_for`), so a mention
  `@u42` in tweet text names user 42 (`user_id_for_handle`);
* tweet ids are snowflake-style: milliseconds since the Twitter epoch shifted left 22
  bits, or'ed with a running tweet sequence number (unique while fewer than 4M tweets
  share a millisecond), so they sort by creation time and differ between runs with
  different epochs;
* tweet text carries its hashtags as `#tag` and its mentions as `@handle`, separated by
  spaces; a reply starts with `@<handle of the replied-to author>`;
* a reply or quote tweet is followed by its matching `UserInteraction` (action reply or
  quote, `tweet_id` = the replied-to/quoted tweet, `target_user_id` = its author).
"""

from __future__ import annotations

import enum
import math
import random
import re
import uuid
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from starling.events import (
    Event,
    InteractionAction,
    LoginOutcome,
    Platform,
    TweetCreated,
    UserInteraction,
    UserLogin,
)
from starling.loadgen import vocabulary

# Twitter's snowflake epoch (2010-11-04T01:42:54.657Z), in Unix milliseconds.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
_SNOWFLAKE_SEQUENCE_BITS = 22
_SNOWFLAKE_SEQUENCE_MASK = (1 << _SNOWFLAKE_SEQUENCE_BITS) - 1
_SNOWFLAKE_EPOCH = datetime.fromtimestamp(SNOWFLAKE_EPOCH_MS / 1000, UTC)
_MILLISECOND = timedelta(milliseconds=1)

# The event time is rebuilt from a float number of seconds (the fast datetime
# constructor); a double keeps microseconds exact only while its spacing stays below
# half a microsecond, which holds until 2^31 seconds after 1970 (year 2038), so epochs
# are kept well inside that.
_MIN_EPOCH = datetime(2011, 1, 1, tzinfo=UTC)
_MAX_EPOCH = datetime(2037, 1, 1, tzinfo=UTC)

_HASHTAG = re.compile(r"^[^\W][\w]{0,99}$")
_HANDLE_PREFIX = "u"
# Handles are at most 15 characters: "u" and up to 14 digits.
MAX_USERS = 10**14 - 1
_MAX_TWEET_CHARS = 280
_SCHEMA_VERSION = 1
# Logins are what the identity service emits: the current UserLogin version.
_LOGIN_SCHEMA_VERSION = UserLogin.SCHEMA_VERSION
# The identity service's default per-account sign-in limit: attempts of a failure burst
# past it are refused as rate_limited (and still emitted, as the service does).
_SIGN_IN_LIMIT_PER_ACCOUNT = 5

# Tweet actions that are not replies/quotes (those are emitted next to their tweet).
_STANDALONE_TWEET_ACTIONS = frozenset(
    {InteractionAction.LIKE, InteractionAction.UNLIKE, InteractionAction.RETWEET}
)
_COMPANION_ACTIONS = frozenset({InteractionAction.REPLY, InteractionAction.QUOTE})

DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_INTERACTION_WEIGHTS: tuple[tuple[InteractionAction, float], ...] = (
    (InteractionAction.LIKE, 55.0),
    (InteractionAction.RETWEET, 15.0),
    (InteractionAction.UNLIKE, 3.0),
    (InteractionAction.FOLLOW, 14.0),
    (InteractionAction.UNFOLLOW, 4.0),
    (InteractionAction.BLOCK, 1.5),
    (InteractionAction.UNBLOCK, 0.5),
    (InteractionAction.MUTE, 2.0),
    (InteractionAction.UNMUTE, 0.5),
)


def handle_for(user_id: int) -> str:
    """The handle (without '@') of a synthetic user: `u<user_id>`."""
    return f"{_HANDLE_PREFIX}{user_id}"


def user_id_for_handle(handle: str) -> int | None:
    """The user a synthetic handle names, or None if it is not of the form `u<digits>`."""
    handle = handle.removeprefix("@")
    digits = handle[len(_HANDLE_PREFIX) :]
    if not handle.startswith(_HANDLE_PREFIX) or not digits.isdigit() or digits[0] == "0":
        return None
    return int(digits)


def normalise_hashtag(tag: str) -> str:
    """Hashtags are compared lower-case and without '#', as the schemas store them."""
    return tag.removeprefix("#").lower()


# ---- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """A hashtag whose rate is multiplied by `multiplier` for `duration_s` seconds of
    event time starting `start_s` seconds after the epoch."""

    hashtag: str
    start_s: float
    duration_s: float
    multiplier: float

    def __post_init__(self) -> None:
        if not _HASHTAG.match(self.hashtag) or self.hashtag != self.hashtag.lower():
            raise ValueError(
                f"burst hashtag {self.hashtag!r} must be lower-case letters, digits or '_'"
                " (no '#'), at most 100 characters"
            )
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"burst {self.hashtag}: start must be >= 0 s, got {self.start_s}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"burst {self.hashtag}: duration must be > 0 s, got {self.duration_s}")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(
                f"burst {self.hashtag}: multiplier must be >= 1, got {self.multiplier}"
            )

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @classmethod
    def parse(cls, spec: str) -> Burst:
        """Parse `TAG:START:DURATION:MULT` (seconds, seconds, factor), e.g. `eclipse:60:30:40`."""
        parts = spec.split(":")
        if len(parts) != 4:
            raise ValueError(f"burst {spec!r} is not TAG:START:DURATION:MULT")
        tag, start, duration, multiplier = parts
        try:
            numbers = float(start), float(duration), float(multiplier)
        except ValueError:
            raise ValueError(f"burst {spec!r}: START, DURATION and MULT must be numbers") from None
        return cls(normalise_hashtag(tag), *numbers)


@dataclass(frozen=True)
class TrafficConfig:
    """Everything that shapes the generated traffic. Same config, same events."""

    seed: int = 0
    users: int = 10_000
    # Barabási-Albert m: each new user follows this many earlier users.
    follows_per_user: int = 3
    epoch: datetime = DEFAULT_EPOCH
    # Simulated event rate: event i happens at epoch + i / events_per_second.
    events_per_second: float = 1000.0
    # Relative weights of tweets : interactions : logins (reply/quote companions count
    # as interactions, so the realised mix matches these weights on average).
    mix: tuple[float, float, float] = (30.0, 60.0, 10.0)
    hashtag_vocabulary: int = 1000
    zipf_exponent: float = 1.1
    # P(0 hashtags), P(1), P(2), ... per tweet (before bursts add theirs).
    hashtags_per_tweet: tuple[float, ...] = (0.35, 0.35, 0.2, 0.1)
    mentions_per_tweet: tuple[float, ...] = (0.7, 0.22, 0.08)
    reply_fraction: float = 0.15
    quote_fraction: float = 0.05
    bursts: tuple[Burst, ...] = ()
    # Outside its bursts, a burst hashtag appears in this fraction of tweets: rare, so a
    # burst stands out against its own baseline, unlike the steady top-ranked tags.
    burst_baseline_per_tweet: float = 0.0005
    interaction_weights: tuple[tuple[InteractionAction, float], ...] = DEFAULT_INTERACTION_WEIGHTS
    # Probability that a tweet action picks its author by popularity (followers + 1)
    # and takes their latest tweet; otherwise a recent tweet is picked by age.
    popular_author_bias: float = 0.6
    # Probability that a tweet action's actor is one of the author's followers.
    follower_actor_bias: float = 0.5
    # Tweets interactions and replies may refer to, and their mean age (in tweets) when
    # picked by recency.
    recent_tweets: int = 5000
    mean_tweet_age: float = 300.0
    login_failure_rate: float = 0.03
    new_country_login_rate: float = 0.01
    failure_burst_rate: float = 0.002
    failure_burst_attempts: tuple[int, int] = (5, 15)

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ValueError(f"TrafficConfig.{name}: {why}")

        if not 2 <= self.users <= MAX_USERS:
            fail("users", f"must be in 2..{MAX_USERS}, got {self.users}")
        if self.follows_per_user < 1:
            fail("follows_per_user", f"must be >= 1, got {self.follows_per_user}")
        if self.epoch.tzinfo is None:
            fail("epoch", "must be timezone-aware")
        if not _MIN_EPOCH <= self.epoch <= _MAX_EPOCH:
            fail("epoch", f"must be between {_MIN_EPOCH:%Y} and {_MAX_EPOCH:%Y}")
        if not (math.isfinite(self.events_per_second) and self.events_per_second > 0):
            fail("events_per_second", f"must be > 0, got {self.events_per_second}")
        if len(self.mix) != 3 or min(self.mix) < 0 or sum(self.mix) <= 0:
            fail("mix", f"needs three weights >= 0 with a positive sum, got {self.mix}")
        if self.hashtag_vocabulary < 1:
            fail("hashtag_vocabulary", f"must be >= 1, got {self.hashtag_vocabulary}")
        if self.hashtag_vocabulary > _max_vocabulary():
            fail("hashtag_vocabulary", f"at most {_max_vocabulary()} tags can be named")
        if not 0 < self.zipf_exponent <= 5:
            fail("zipf_exponent", f"must be in (0, 5], got {self.zipf_exponent}")
        for name in ("hashtags_per_tweet", "mentions_per_tweet"):
            weights: tuple[float, ...] = getattr(self, name)
            if not weights or min(weights) < 0 or sum(weights) <= 0:
                fail(name, "needs weights >= 0 with a positive sum")
            if len(weights) > 6:
                fail(name, "at most 5 per tweet (6 weights)")
        for name in (
            "reply_fraction",
            "quote_fraction",
            "burst_baseline_per_tweet",
            "popular_author_bias",
            "follower_actor_bias",
            "login_failure_rate",
            "new_country_login_rate",
            "failure_burst_rate",
        ):
            value: float = getattr(self, name)
            if not 0 <= value <= 1:
                fail(name, f"must be a probability in [0, 1], got {value}")
        if self.reply_fraction + self.quote_fraction > 1:
            fail("reply_fraction", "reply_fraction + quote_fraction must be <= 1")
        if self.new_country_login_rate + self.failure_burst_rate > 1:
            fail("new_country_login_rate", "+ failure_burst_rate must be <= 1")
        low, high = self.failure_burst_attempts
        if not 1 <= low <= high:
            fail("failure_burst_attempts", f"needs 1 <= min <= max, got {(low, high)}")
        actions = [action for action, _ in self.interaction_weights]
        if any(action in _COMPANION_ACTIONS for action in actions):
            fail(
                "interaction_weights",
                "reply and quote come with reply/quote tweets (reply_fraction,"
                " quote_fraction), not from these weights",
            )
        if len(set(actions)) != len(actions):
            fail("interaction_weights", "an action is listed twice")
        weights_ = [weight for _, weight in self.interaction_weights]
        if not weights_ or min(weights_) < 0 or sum(weights_) <= 0:
            fail("interaction_weights", "needs weights >= 0 with a positive sum")
        if self.recent_tweets < 1:
            fail("recent_tweets", f"must be >= 1, got {self.recent_tweets}")
        if not self.mean_tweet_age > 0:
            fail("mean_tweet_age", f"must be > 0, got {self.mean_tweet_age}")
        burst_tags = {burst.hashtag for burst in self.bursts}
        # Every burst tag may appear in one tweet next to the longest ordinary content.
        if sum(len(tag) + 2 for tag in burst_tags) + _max_plain_text_chars(self) > (
            _MAX_TWEET_CHARS
        ):
            fail("bursts", "burst hashtags too many or too long to fit in one tweet")


# ---- users and the follow graph ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A synthetic user and where they normally log in from."""

    user_id: int
    handle: str
    country: str
    device_id: str
    ip: str
    platform: Platform

    @property
    def user_agent(self) -> str:
        return vocabulary.USER_AGENTS[self.platform.value]


class FollowGraph:
    """Who follows whom: an immutable directed graph over user ids 1..n.

    `followers(u)` are the users who see u's tweets (fan-out targets); `following(u)` are
    the users u follows. Both are sorted tuples.
    """

    def __init__(self, following: Sequence[Sequence[int]]) -> None:
        """`following[i]` lists the users user i+1 follows."""
        n = len(following)
        followers: list[list[int]] = [[] for _ in range(n)]
        for index, followees in enumerate(following):
            follower = index + 1
            for followee in followees:
                if not 1 <= followee <= n or followee == follower:
                    raise ValueError(f"user {follower} cannot follow {followee}")
                followers[followee - 1].append(follower)
        self._following = tuple(tuple(sorted(set(f))) for f in following)
        # Built by scanning followers in ascending order, so already sorted.
        self._followers = tuple(tuple(f) for f in followers)

    @property
    def user_ids(self) -> range:
        return range(1, len(self._following) + 1)

    def followers(self, user_id: int) -> tuple[int, ...]:
        return self._followers[user_id - 1]

    def following(self, user_id: int) -> tuple[int, ...]:
        return self._following[user_id - 1]

    def follower_count(self, user_id: int) -> int:
        return len(self._followers[user_id - 1])

    def follower_counts(self) -> list[int]:
        """In-degrees, index i for user i+1."""
        return [len(f) for f in self._followers]

    def is_following(self, follower: int, followee: int) -> bool:
        followees = self._following[follower - 1]
        position = bisect_right(followees, followee)
        return position > 0 and followees[position - 1] == followee

    def edges(self) -> Iterator[tuple[int, int]]:
        """(follower, followee) pairs in follower order."""
        for index, followees in enumerate(self._following):
            for followee in followees:
                yield index + 1, followee

    @property
    def edge_count(self) -> int:
        return sum(len(f) for f in self._following)


def preferential_attachment(users: int, follows_per_user: int, rng: random.Random) -> FollowGraph:
    """Barabási-Albert growth: user k follows min(m, k-1) distinct earlier users, each
    chosen with probability proportional to (its follower count + 1).

    `pool` holds every user once (the +1) plus once per follower it has, so a uniform
    pick from it is the preferential pick.
    """
    following: list[list[int]] = []
    pool: list[int] = []
    random_ = rng.random
    for user_id in range(1, users + 1):
        wanted = min(follows_per_user, user_id - 1)
        chosen: list[int] = []
        while len(chosen) < wanted:
            candidate = pool[int(random_() * len(pool))]
            if candidate not in chosen:
                chosen.append(candidate)
        following.append(chosen)
        pool.extend(chosen)
        pool.append(user_id)
    return FollowGraph(following)


# ---- ground truth --------------------------------------------------------------------------


@dataclass(frozen=True)
class BurstTruth:
    """A hashtag burst as generated: its tweets fall in [start, end)."""

    hashtag: str
    start: datetime
    end: datetime
    multiplier: float
    # Expected occurrences per tweet outside any burst of this hashtag.
    baseline_per_tweet: float

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


class LoginAnomalyKind(enum.StrEnum):
    NEW_COUNTRY = "new_country"  # a successful login from outside the home country
    FAILURE_BURST = "failure_burst"  # consecutive failed logins from one foreign source


@dataclass(frozen=True)
class LoginAnomaly:
    kind: LoginAnomalyKind
    user_id: int
    country: str
    ip: str
    event_ids: tuple[uuid.UUID, ...]
    first_time: datetime
    last_time: datetime


@dataclass
class _FailureBurst:
    user_id: int
    country: str
    ip: str
    device_id: str
    platform: Platform
    remaining: int
    attempts: int = 0
    event_ids: list[uuid.UUID] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)


# ---- fast value constructors ---------------------------------------------------------------

_UUID_VERSION_MASK = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_VERSION_BITS = (0x8000 << 48) | (4 << 76)
_new_object = object.__new__
_set_attribute = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _uuid4_from_bits(bits: int) -> uuid.UUID:
    """Same value as `uuid.UUID(int=bits, version=4)` at about half the cost: the
    constructor's argument checks dominate event generation otherwise."""
    value = _new_object(uuid.UUID)
    _set_attribute(value, "int", (bits & _UUID_VERSION_MASK) | _UUID_VERSION_BITS)
    _set_attribute(value, "is_safe", _SAFE_UNKNOWN)
    return value


def _uuid4_checked(bits: int) -> uuid.UUID:
    return uuid.UUID(int=bits, version=4)


def _pick_uuid_constructor() -> Callable[[int], uuid.UUID]:
    """Use the fast path only if it builds exactly what the public constructor does on
    this Python (it relies on UUID's slot names)."""
    probe = random.Random(12345)
    try:
        for _ in range(64):
            bits = probe.getrandbits(128)
            fast, slow = _uuid4_from_bits(bits), _uuid4_checked(bits)
            if fast != slow or str(fast) != str(slow) or hash(fast) != hash(slow):
                return _uuid4_checked
    except (AttributeError, TypeError):
        return _uuid4_checked
    return _uuid4_from_bits


_make_uuid4 = _pick_uuid_constructor()


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(float(w) for w in weights))


def _max_vocabulary() -> int:
    roots = len(vocabulary.HASHTAG_ROOTS)
    return roots + roots * (roots - 1)


def _hashtag_names(count: int, excluded: frozenset[str]) -> list[str]:
    """Hashtag names by Zipf rank: single roots first, then root pairs. Burst tags are
    left out so their only source is their own (rare) baseline and burst."""
    roots = vocabulary.HASHTAG_ROOTS
    names: list[str] = []
    seen: set[str] = set()

    def candidates() -> Iterator[str]:
        yield from roots
        for distance in range(1, len(roots)):
            for index, root in enumerate(roots):
                yield root + roots[(index + distance) % len(roots)]

    for name in candidates():
        if len(names) == count:
            break
        if name not in seen and name not in excluded:
            seen.add(name)
            names.append(name)
    return names


def _longest(words: Sequence[str]) -> int:
    return max(len(word) for word in words)


# A tweet body is a lead phrase (an optional opener and 1-6 words) and a tail phrase
# (2-6 words), each drawn from a pool of this many phrases built at start-up.
_PHRASE_POOL = 2048
_MAX_LEAD_WORDS = 6
_MAX_TAIL_WORDS = 6
_MAX_BODY_WORDS = _MAX_LEAD_WORDS + _MAX_TAIL_WORDS


def _max_plain_text_chars(config: TrafficConfig) -> int:
    """An upper bound on a tweet's length without burst tags (each part + a space)."""
    roots = vocabulary.HASHTAG_ROOTS
    longest_tag = 2 * _longest(roots)
    longest_handle = len(handle_for(config.users))
    max_tags = len(config.hashtags_per_tweet) - 1
    max_mentions = len(config.mentions_per_tweet) - 1
    return (
        (longest_handle + 2)  # reply prefix
        + (_longest(vocabulary.OPENERS) + 1)
        + _MAX_BODY_WORDS * (_longest(vocabulary.WORDS) + 1)
        + max_tags * (longest_tag + 2)
        + max_mentions * (longest_handle + 2)
    )


# ---- the generator -------------------------------------------------------------------------


class TrafficGenerator:
    """Seeded synthetic traffic. Build it, read `users`, `graph` and `bursts`, then draw
    events from `events()`; login anomalies are recorded as they are generated
    (`login_anomalies`).

    Example::

        generator = TrafficGenerator(TrafficConfig(seed=7, users=1000))
        events = list(generator.events(10_000))
        fan_out_targets = generator.graph.followers(1)
        trending_truth = generator.bursts
    """

    def __init__(self, config: TrafficConfig | None = None) -> None:
        self.config = config = config or TrafficConfig()
        self._rng = rng = random.Random(config.seed)
        self._random = rng.random

        self.graph = preferential_attachment(config.users, config.follows_per_user, rng)
        follower_counts = self.graph.follower_counts()
        self.users: tuple[UserProfile, ...] = self._make_users(config.users)

        # Popularity = followers + 1: targets of tweet actions, follows and mentions.
        self._popularity_cum = _cumulative([count + 1 for count in follower_counts])
        # Activity = sqrt(followers + 1): popular accounts tweet more, but sub-linearly.
        self._activity_cum = _cumulative([math.sqrt(count + 1) for count in follower_counts])

        burst_tags = frozenset(burst.hashtag for burst in config.bursts)
        self.hashtags: tuple[str, ...] = tuple(
            _hashtag_names(config.hashtag_vocabulary, burst_tags)
        )
        self._zipf_cum = _cumulative(
            [1.0 / rank**config.zipf_exponent for rank in range(1, len(self.hashtags) + 1)]
        )
        self._hashtag_count_cum = _cumulative(config.hashtags_per_tweet)
        self._mention_count_cum = _cumulative(config.mentions_per_tweet)
        self._burst_tags = tuple(sorted(burst_tags))
        self.bursts: tuple[BurstTruth, ...] = tuple(
            BurstTruth(
                hashtag=burst.hashtag,
                start=config.epoch + timedelta(seconds=burst.start_s),
                end=config.epoch + timedelta(seconds=burst.end_s),
                multiplier=burst.multiplier,
                baseline_per_tweet=config.burst_baseline_per_tweet,
            )
            for burst in config.bursts
        )
        # Decided on the event time itself, so the ground truth matches to the microsecond.
        self._burst_windows = tuple(
            (truth.hashtag, truth.start, truth.end, truth.multiplier) for truth in self.bursts
        )

        # Reply/quote companions are interactions too: take them out of the interaction
        # weight so the realised mix matches the configured one on average.
        tweets, interactions, logins = config.mix
        companions = tweets * (config.reply_fraction + config.quote_fraction)
        standalone_interactions = max(0.0, interactions - companions)
        total = tweets + standalone_interactions + logins
        self._tweet_threshold = tweets / total
        self._interaction_threshold = (tweets + standalone_interactions) / total

        self._actions = tuple(action for action, _ in config.interaction_weights)
        self._action_cum = _cumulative([weight for _, weight in config.interaction_weights])
        self._action_total = self._action_cum[-1]
        self._activity_total = self._activity_cum[-1]
        self._reply_fraction = config.reply_fraction
        self._reply_or_quote_fraction = config.reply_fraction + config.quote_fraction
        self._popularity_total = self._popularity_cum[-1]
        self._popular_author_bias = config.popular_author_bias
        self._follower_actor_bias = config.follower_actor_bias
        self._followers_table = tuple(self.graph.followers(user) for user in self.graph.user_ids)
        # Indexed by user id (slot 0 unused), to skip an attribute lookup per event.
        self._platform_of = (Platform.WEB, *(user.platform for user in self.users))

        self._countries = tuple(code for code, _ in vocabulary.COUNTRIES)
        self._body_leads = self._phrases(1, _MAX_LEAD_WORDS, opener_share=0.5)
        self._body_tails = self._phrases(2, _MAX_TAIL_WORDS, opener_share=0.0)

        self._epoch_seconds = config.epoch.timestamp()
        self._seconds_per_event = 1.0 / config.events_per_second
        self._init_stream_state()

    def _init_stream_state(self) -> None:
        """State that evolves with the stream: the clock, recent tweets, the live follow
        and block/mute relations, pending companions and login anomalies."""
        self._index = 0
        self._tweet_sequence = 0
        # Recent tweets as parallel ring buffers (ids, authors): cheap to append and to
        # index by age.
        self._recent_ids: list[int] = []
        self._recent_authors: list[int] = []
        self._recent_next = 0
        self._latest_by_author: dict[int, int] = {}
        # Live state, so follows/unfollows/undos stay consistent with what came before.
        # Copied from the graph on a user's first follow/unfollow: most users never
        # change, and a set per user would dominate memory for large populations.
        self._following: dict[int, set[int]] = {}
        self._blocks: list[tuple[int, int]] = []
        self._blocked: set[tuple[int, int]] = set()
        self._mutes: list[tuple[int, int]] = []
        self._muted: set[tuple[int, int]] = set()
        self._recent_likes: list[tuple[int, int, int]] = []  # (actor, tweet, author)
        self._pending: deque[tuple[int, InteractionAction, int, int, Platform]] = deque()

        self._failure_bursts: deque[_FailureBurst] = deque()
        self._anomalies: list[LoginAnomaly | _FailureBurst] = []

    # ---- public views ----------------------------------------------------------------

    @property
    def events_generated(self) -> int:
        return self._index

    def time_of(self, index: int) -> datetime:
        """Event time of event number `index` (0-based)."""
        return datetime.fromtimestamp(self._epoch_seconds + index * self._seconds_per_event, UTC)

    @property
    def login_anomalies(self) -> tuple[LoginAnomaly, ...]:
        """Injected login anomalies so far (a failure burst still in progress is listed
        with the attempts emitted until now)."""
        return tuple(
            record if isinstance(record, LoginAnomaly) else _failure_burst_truth(record)
            for record in self._anomalies
            if isinstance(record, LoginAnomaly) or record.event_ids
        )

    def current_graph(self) -> FollowGraph:
        """The follow graph after the follows/unfollows generated so far (`graph` is the
        graph at the epoch)."""
        changed = self._following
        return FollowGraph(
            [
                sorted(changed[user_id]) if user_id in changed else self.graph.following(user_id)
                for user_id in self.graph.user_ids
            ]
        )

    def _followees(self, user_id: int) -> set[int]:
        """The live, mutable set of users `user_id` follows."""
        followees = self._following.get(user_id)
        if followees is None:
            followees = self._following[user_id] = set(self.graph.following(user_id))
        return followees

    def user(self, user_id: int) -> UserProfile:
        return self.users[user_id - 1]

    # ---- the stream --------------------------------------------------------------------

    def events(self, count: int | None = None) -> Iterator[Event]:
        """The next `count` events (endless if None). Calling it again continues the
        same stream: a reply or quote tweet drawn last has its companion interaction
        first in the next draw."""
        random_ = self._random
        tweet_threshold = self._tweet_threshold
        interaction_threshold = self._interaction_threshold
        pending = self._pending
        make_tweet, make_interaction, make_login = self._tweet, self._interaction, self._login
        from_timestamp = datetime.fromtimestamp
        epoch, step = self._epoch_seconds, self._seconds_per_event
        remaining = -1 if count is None else count
        while remaining:
            remaining -= 1
            index = self._index
            event_time = from_timestamp(epoch + index * step, UTC)
            event: Event
            if pending:
                event = self._companion(event_time, *pending.popleft())
            else:
                draw = random_()
                if draw < tweet_threshold:
                    event = make_tweet(event_time)
                elif draw < interaction_threshold:
                    event = make_interaction(event_time)
                else:
                    event = make_login(event_time)
            self._index = index + 1
            yield event

    def _phrases(self, min_words: int, max_words: int, opener_share: float) -> tuple[str, ...]:
        """A pool of word sequences tweet bodies are cut from (built once, seeded)."""
        rng = self._rng
        words, openers = vocabulary.WORDS, vocabulary.OPENERS
        phrases = []
        for _ in range(_PHRASE_POOL):
            chosen = [words[int(rng.random() * len(words))] for _ in range(min_words)]
            chosen += [
                words[int(rng.random() * len(words))]
                for _ in range(int(rng.random() * (max_words - min_words + 1)))
            ]
            if rng.random() < opener_share:
                chosen.insert(0, openers[int(rng.random() * len(openers))])
            phrases.append(" ".join(chosen))
        return tuple(phrases)

    # ---- users ---------------------------------------------------------------------------

    def _make_users(self, count: int) -> tuple[UserProfile, ...]:
        rng = self._rng
        country_cum = _cumulative([share for _, share in vocabulary.COUNTRIES])
        codes = [code for code, _ in vocabulary.COUNTRIES]
        platforms = (Platform.IOS, Platform.ANDROID, Platform.WEB)
        platform_cum = _cumulative((40.0, 45.0, 15.0))
        users = []
        for user_id in range(1, count + 1):
            country = codes[bisect_right(country_cum, rng.random() * country_cum[-1])]
            platform = platforms[bisect_right(platform_cum, rng.random() * platform_cum[-1])]
            users.append(
                UserProfile(
                    user_id=user_id,
                    handle=handle_for(user_id),
                    country=country,
                    device_id=f"{rng.getrandbits(64):016x}",
                    ip=self._ip_in(country),
                    platform=platform,
                )
            )
        return tuple(users)

    def _ip_in(self, country: str) -> str:
        """An IPv4 address in a per-country /8, so "same country" is visible in the ip."""
        first_octet = _COUNTRY_FIRST_OCTET[country]
        bits = self._rng.getrandbits(24)
        return f"{first_octet}.{bits >> 16}.{(bits >> 8) & 0xFF}.{(bits & 0xFF) or 1}"

    def _popular_user(self) -> int:
        cum = self._popularity_cum
        return bisect_right(cum, self._random() * cum[-1]) + 1

    def _active_user(self) -> int:
        cum = self._activity_cum
        return bisect_right(cum, self._random() * cum[-1]) + 1

    def _any_user(self) -> int:
        return int(self._random() * self.config.users) + 1

    def _any_other_user(self, user_id: int) -> int:
        # Uniform over the other n-1 users: shift past `user_id`.
        other = int(self._random() * (self.config.users - 1)) + 1
        return other + 1 if other >= user_id else other

    # ---- tweets ----------------------------------------------------------------------------

    def _tweet(self, event_time: datetime) -> TweetCreated:
        random_ = self._random
        author = bisect_right(self._activity_cum, random_() * self._activity_total) + 1
        self._tweet_sequence += 1
        # Exact integer milliseconds of the event time, so the id's time part and
        # `event_time` always agree.
        snowflake_ms = (event_time - _SNOWFLAKE_EPOCH) // _MILLISECOND
        tweet_id = (snowflake_ms << _SNOWFLAKE_SEQUENCE_BITS) | (
            self._tweet_sequence & _SNOWFLAKE_SEQUENCE_MASK
        )

        parts: list[str] = []
        reply_to: tuple[int, int] | None = None
        quote_of: tuple[int, int] | None = None
        if self._recent_ids:
            draw = random_()
            if draw < self._reply_fraction:
                reply_to = self._recent_tweet()
                parts.append("@" + handle_for(reply_to[1]))
            elif draw < self._reply_or_quote_fraction:
                quote_of = self._recent_tweet()

        mention_count = bisect_right(
            self._mention_count_cum, random_() * self._mention_count_cum[-1]
        )
        if mention_count:
            parts.extend(self._mentions(author, mention_count))

        # Body = a random lead phrase + a random tail phrase from pools built at start-up:
        # drawing words one by one was the most expensive step of a tweet.
        leads, tails = self._body_leads, self._body_tails
        parts.append(leads[int(random_() * len(leads))])
        parts.append(tails[int(random_() * len(tails))])

        hashtag_count = bisect_right(
            self._hashtag_count_cum, random_() * self._hashtag_count_cum[-1]
        )
        if hashtag_count:
            parts.extend(self._hashtags(hashtag_count))
        if self._burst_tags:
            parts.extend("#" + tag for tag in self._burst_tags_for(event_time))

        # Mostly from the author's usual client, sometimes from another one.
        platform = self._platform_of[author] if random_() < 0.9 else _PLATFORMS[int(random_() * 3)]
        self._remember_tweet(tweet_id, author)
        if reply_to is not None:
            self._pending.append(
                (author, InteractionAction.REPLY, reply_to[1], reply_to[0], platform)
            )
        elif quote_of is not None:
            self._pending.append(
                (author, InteractionAction.QUOTE, quote_of[1], quote_of[0], platform)
            )
        return TweetCreated(
            event_id=_make_uuid4(self._rng.getrandbits(128)),
            schema_version=_SCHEMA_VERSION,
            event_time=event_time,
            tweet_id=tweet_id,
            author_id=author,
            text=" ".join(parts),
            platform=platform,
            reply_to_tweet_id=reply_to[0] if reply_to else None,
            reply_to_user_id=reply_to[1] if reply_to else None,
            quote_of_tweet_id=quote_of[0] if quote_of else None,
        )

    def _mentions(self, author: int, count: int) -> list[str]:
        """`@handle`s of up to `count` distinct users other than the author, popular
        users more likely."""
        mentioned: list[int] = []
        for _ in range(count * 3):  # a few tries; tiny populations may run out
            candidate = self._popular_user()
            if candidate != author and candidate not in mentioned:
                mentioned.append(candidate)
                if len(mentioned) == count:
                    break
        return ["@" + handle_for(user_id) for user_id in mentioned]

    def _hashtags(self, count: int) -> list[str]:
        """`#tag`s of `count` distinct tags drawn from the Zipf distribution."""
        random_ = self._random
        zipf_cum = self._zipf_cum
        total = zipf_cum[-1]
        names = self.hashtags
        count = min(count, len(names))
        tags: list[str] = []
        while len(tags) < count:
            tag = names[bisect_right(zipf_cum, random_() * total)]
            if tag not in tags:
                tags.append(tag)
        return ["#" + tag for tag in tags]

    def _burst_tags_for(self, event_time: datetime) -> list[str]:
        """Burst hashtags this tweet carries: each at its rare baseline rate, times the
        burst multiplier while one of its bursts is on."""
        baseline = self.config.burst_baseline_per_tweet
        carried = []
        for tag in self._burst_tags:
            multiplier = 1.0
            for burst_tag, start, end, burst_multiplier in self._burst_windows:
                if burst_tag == tag and start <= event_time < end:
                    multiplier = max(multiplier, burst_multiplier)
            if self._random() < baseline * multiplier:
                carried.append(tag)
        return carried

    def _remember_tweet(self, tweet_id: int, author: int) -> None:
        capacity = self.config.recent_tweets
        if len(self._recent_ids) < capacity:
            self._recent_ids.append(tweet_id)
            self._recent_authors.append(author)
        else:
            self._recent_ids[self._recent_next] = tweet_id
            self._recent_authors[self._recent_next] = author
        self._recent_next = (self._recent_next + 1) % capacity
        self._latest_by_author[author] = tweet_id

    def _recent_tweet(self) -> tuple[int, int]:
        """(tweet id, author) of an earlier tweet, younger ones far more likely."""
        held = len(self._recent_ids)
        age = int(-math.log(1.0 - self._random()) * self.config.mean_tweet_age)
        if age >= held:
            age = int(self._random() * held)
        position = (self._recent_next - 1 - age) % held
        return self._recent_ids[position], self._recent_authors[position]

    # ---- interactions ----------------------------------------------------------------------

    def _companion(
        self,
        event_time: datetime,
        actor: int,
        action: InteractionAction,
        target: int,
        tweet_id: int | None,
        platform: Platform,
    ) -> UserInteraction:
        return UserInteraction(
            event_id=_make_uuid4(self._rng.getrandbits(128)),
            schema_version=_SCHEMA_VERSION,
            event_time=event_time,
            actor_id=actor,
            action=action,
            target_user_id=target,
            tweet_id=tweet_id,
            platform=platform,
        )

    def _interaction(self, event_time: datetime) -> UserInteraction:
        random_ = self._random
        action = self._actions[bisect_right(self._action_cum, random_() * self._action_total)]
        if action in _STANDALONE_TWEET_ACTIONS and not self._recent_ids:
            action = InteractionAction.FOLLOW  # nothing to act on before the first tweet
        if action is InteractionAction.UNLIKE:
            if self._recent_likes:
                liker, liked_tweet, liked_author = self._take(self._recent_likes)
                return self._interaction_event(event_time, liker, action, liked_author, liked_tweet)
            action = InteractionAction.LIKE  # nothing liked yet: nothing to undo
        if action is not InteractionAction.LIKE and action is not InteractionAction.RETWEET:
            actor, action, target = self._user_action(action)
            return self._interaction_event(event_time, actor, action, target, None)

        # Likes and retweets are most of the traffic, so this path is written out inline.
        # The tweet: often the latest one of an author picked by popularity, else a
        # recent tweet picked by age.
        tweet_id: int | None = None
        if random_() < self._popular_author_bias:
            target = bisect_right(self._popularity_cum, random_() * self._popularity_total) + 1
            tweet_id = self._latest_by_author.get(target)
        if tweet_id is None:
            tweet_id, target = self._recent_tweet()
        # The actor: often one of the author's followers, else anyone but the author.
        actor = 0
        if random_() < self._follower_actor_bias:
            followers = self._followers_table[target - 1]
            if followers:
                actor = followers[int(random_() * len(followers))]
        if not actor:
            actor = self._any_other_user(target)
        if action is InteractionAction.LIKE:
            likes = self._recent_likes
            if len(likes) < _LIKES_REMEMBERED:
                likes.append((actor, tweet_id, target))
            else:
                likes[int(random_() * _LIKES_REMEMBERED)] = (actor, tweet_id, target)
        return UserInteraction(
            event_id=_make_uuid4(self._rng.getrandbits(128)),
            schema_version=_SCHEMA_VERSION,
            event_time=event_time,
            actor_id=actor,
            action=action,
            target_user_id=target,
            tweet_id=tweet_id,
            platform=self._platform_of[actor],
        )

    def _interaction_event(
        self,
        event_time: datetime,
        actor: int,
        action: InteractionAction,
        target: int,
        tweet_id: int | None,
    ) -> UserInteraction:
        return self._companion(
            event_time, actor, action, target, tweet_id, self._platform_of[actor]
        )

    def _take(self, items: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        """Remove and return a random item (swap with the last: order is irrelevant)."""
        position = int(self._random() * len(items))
        items[position], items[-1] = items[-1], items[position]
        return items.pop()

    def _user_action(self, action: InteractionAction) -> tuple[int, InteractionAction, int]:
        """(actor, action, target) for an action on a user, consistent with the state so
        far: an undo needs something to undo, and falls back to the action itself."""
        if action is InteractionAction.UNFOLLOW:
            actor = self._any_user()
            followees = self._followees(actor)
            if followees:
                target = sorted(followees)[int(self._random() * len(followees))]
                followees.discard(target)
                return actor, action, target
            action = InteractionAction.FOLLOW
        if action is InteractionAction.FOLLOW:
            return self._follow()
        if action is InteractionAction.UNBLOCK or action is InteractionAction.UNMUTE:
            pairs, members = (
                (self._blocks, self._blocked)
                if action is InteractionAction.UNBLOCK
                else (self._mutes, self._muted)
            )
            if pairs:
                position = int(self._random() * len(pairs))
                pairs[position], pairs[-1] = pairs[-1], pairs[position]
                actor, target = pairs.pop()
                members.discard((actor, target))
                return actor, action, target
            action = (
                InteractionAction.BLOCK
                if action is InteractionAction.UNBLOCK
                else InteractionAction.MUTE
            )
        pairs, members = (
            (self._blocks, self._blocked)
            if action is InteractionAction.BLOCK
            else (self._mutes, self._muted)
        )
        actor = self._any_user()
        target = self._any_other_user(actor)
        if (actor, target) not in members:
            members.add((actor, target))
            pairs.append((actor, target))
        return actor, action, target

    def _follow(self) -> tuple[int, InteractionAction, int]:
        for _ in range(20):
            actor = self._any_user()
            followees = self._followees(actor)
            target = self._popular_user()
            if target == actor or target in followees:
                target = self._any_other_user(actor)
            if target not in followees:
                followees.add(target)
                return actor, InteractionAction.FOLLOW, target
        # Only reachable in tiny, nearly saturated graphs: search exhaustively, and undo
        # a follow if everyone already follows everyone.
        actor = self._any_user()
        followees = self._followees(actor)
        for target in self.graph.user_ids:
            if target != actor and target not in followees:
                followees.add(target)
                return actor, InteractionAction.FOLLOW, target
        target = sorted(followees)[0]
        followees.discard(target)
        return actor, InteractionAction.UNFOLLOW, target

    # ---- logins ----------------------------------------------------------------------------

    def _login(self, event_time: datetime) -> UserLogin:
        random_ = self._random
        config = self.config
        if self._failure_bursts and random_() < 0.5:
            return self._failure_attempt(event_time)
        user_id = self._active_user()
        profile = self.users[user_id - 1]
        draw = random_()
        if draw < config.new_country_login_rate:
            country = self._foreign_country(profile.country)
            # Drawn in the order the generator has always drawn them (same seed, same login).
            event_id = _make_uuid4(self._rng.getrandbits(128))
            ip = self._ip_in(country)
            device_id = f"{self._rng.getrandbits(64):016x}"
            platform = _PLATFORMS[int(random_() * 3)]
            event = UserLogin(
                event_id=event_id,
                schema_version=_LOGIN_SCHEMA_VERSION,
                event_time=event_time,
                user_id=user_id,
                username=profile.handle,
                outcome=LoginOutcome.SUCCEEDED,
                success=True,
                ip=ip,
                user_agent=vocabulary.USER_AGENTS[platform.value],
                country=country,
                device_id=device_id,
                platform=platform,
            )
            self._anomalies.append(
                LoginAnomaly(
                    kind=LoginAnomalyKind.NEW_COUNTRY,
                    user_id=user_id,
                    country=country,
                    ip=event.ip,
                    event_ids=(event.event_id,),
                    first_time=event_time,
                    last_time=event_time,
                )
            )
            return event
        if draw < config.new_country_login_rate + config.failure_burst_rate:
            country = self._foreign_country(profile.country)
            low, high = config.failure_burst_attempts
            burst = _FailureBurst(
                user_id=user_id,
                country=country,
                ip=self._ip_in(country),
                device_id=f"{self._rng.getrandbits(64):016x}",
                platform=Platform.WEB,
                remaining=low + int(random_() * (high - low + 1)),
            )
            self._failure_bursts.append(burst)
            self._anomalies.append(burst)
            return self._failure_attempt(event_time)
        success = random_() >= config.login_failure_rate
        return UserLogin(
            event_id=_make_uuid4(self._rng.getrandbits(128)),
            schema_version=_LOGIN_SCHEMA_VERSION,
            event_time=event_time,
            user_id=user_id,
            username=profile.handle,
            outcome=LoginOutcome.SUCCEEDED if success else LoginOutcome.BAD_PASSWORD,
            success=success,
            ip=profile.ip,
            user_agent=profile.user_agent,
            country=profile.country,
            device_id=profile.device_id,
            platform=profile.platform,
        )

    def _failure_attempt(self, event_time: datetime) -> UserLogin:
        burst = self._failure_bursts[0]
        limited = burst.attempts >= _SIGN_IN_LIMIT_PER_ACCOUNT
        event = UserLogin(
            event_id=_make_uuid4(self._rng.getrandbits(128)),
            schema_version=_LOGIN_SCHEMA_VERSION,
            event_time=event_time,
            user_id=burst.user_id,
            username=handle_for(burst.user_id),
            outcome=LoginOutcome.RATE_LIMITED if limited else LoginOutcome.BAD_PASSWORD,
            success=False,
            ip=burst.ip,
            user_agent=vocabulary.ATTACKER_USER_AGENT,
            country=burst.country,
            device_id=burst.device_id,
            platform=burst.platform,
        )
        burst.event_ids.append(event.event_id)
        burst.times.append(event_time)
        burst.attempts += 1
        burst.remaining -= 1
        if burst.remaining == 0:
            self._failure_bursts.popleft()
        return event

    def _foreign_country(self, home: str) -> str:
        others = [code for code in self._countries if code != home]
        return others[int(self._random() * len(others))]


_PLATFORMS = (Platform.IOS, Platform.ANDROID, Platform.WEB)
# Recent likes kept so that unlikes undo a real like.
_LIKES_REMEMBERED = 1000
# Public-looking, distinct first octets (31, 38, ..., 199) for the country address blocks.
_COUNTRY_FIRST_OCTET = {code: 31 + 7 * n for n, (code, _) in enumerate(vocabulary.COUNTRIES)}


def _failure_burst_truth(burst: _FailureBurst) -> LoginAnomaly:
    return LoginAnomaly(
        kind=LoginAnomalyKind.FAILURE_BURST,
        user_id=burst.user_id,
        country=burst.country,
        ip=burst.ip,
        event_ids=tuple(burst.event_ids),
        first_time=burst.times[0],
        last_time=burst.times[-1],
    )
