"""Event contracts: one msgspec Struct per event type, shared by services, operators and DAGs.

Every event carries `event_id` (idempotency key), `schema_version` and `event_time`
(when it happened at the source, tz-aware). `type` is the tag that selects the schema
when decoding. Each class names the field its Kafka partition key comes from, so the key
is defined next to the data it keys.

Evolving a schema: adding an optional field (with a default) keeps the version; anything
else (removing, renaming, retyping, making optional required) is a new version, with the
old one kept decodable until no topic holds it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from msgspec import Meta, Struct

# ---- shared field types -------------------------------------------------------------------

EventId = uuid.UUID
UserId = Annotated[int, Meta(ge=1, le=2**63 - 1, description="snowflake-style user id")]
TweetId = Annotated[int, Meta(ge=1, le=2**63 - 1, description="snowflake-style tweet id")]
EventTime = Annotated[datetime, Meta(tz=True, description="tz-aware time at the source")]
# Twitter's limit is 280 characters; counting code points is close enough for our purposes.
TweetText = Annotated[str, Meta(min_length=1, max_length=280)]
Hashtag = Annotated[
    str, Meta(pattern=r"^\w{1,100}$", description="without '#'; ingestion case-folds it")
]
Handle = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_]{1,15}$", description="without '@'")]
CountryCode = Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
LanguageCode = Annotated[str, Meta(pattern=r"^[a-z]{2,3}$|^und$", description="ISO 639")]
Score = Annotated[float, Meta(ge=-1e12, le=1e12)]


E = TypeVar("E", bound="EventBase")


class Platform(enum.StrEnum):
    WEB = "web"
    IOS = "ios"
    ANDROID = "android"


class EventBase(
    Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    forbid_unknown_fields=False,
    omit_defaults=True,
):
    """Fields every event has. Unknown fields are ignored so producers can add optional
    fields ahead of consumers (additive evolution without a version bump)."""

    # The partition key field of each concrete event (see `partition_key`).
    KEY_FIELD: ClassVar[str]
    # The version producers write now, and every version consumers still decode (a class
    # that decodes several checks each version's rules in its `__post_init__`).
    SCHEMA_VERSION: ClassVar[int] = 1
    SUPPORTED_VERSIONS: ClassVar[tuple[int, ...]] = (1,)

    event_id: EventId
    schema_version: int
    event_time: EventTime

    def __post_init__(self) -> None:
        if not supports_version(type(self), self.schema_version):
            raise ValueError(
                f"unsupported schema_version {self.schema_version} for {type(self).__name__}"
                f" (supported: {supported_versions_text(type(self))}) - at `$.schema_version`"
            )

    def partition_key(self) -> bytes:
        """Bytes of the entity whose order matters for this event type."""
        return str(getattr(self, self.KEY_FIELD)).encode()


# ---- logins -------------------------------------------------------------------------------


class LoginOutcome(enum.StrEnum):
    """How a sign-in attempt ended, as the identity service decided it."""

    SUCCEEDED = "succeeded"
    BAD_PASSWORD = "bad_password"
    UNKNOWN_ACCOUNT = "unknown_account"
    # Refused before the password was checked: too many attempts for the account or address.
    RATE_LIMITED = "rate_limited"


# Outcomes that may name no account: the name tried matches none (a rate-limited attempt
# on an unknown name is refused before the lookup, so it may carry no id either).
_OUTCOMES_WITHOUT_ACCOUNT = frozenset({LoginOutcome.UNKNOWN_ACCOUNT, LoginOutcome.RATE_LIMITED})


class UserLogin(EventBase, frozen=True, kw_only=True, tag="user.login"):
    """A sign-in attempt, successful or not.

    v1 (clients posted it): user_id, success, ip, country, device_id and platform required.
    v2 (the identity service emits one per attempt): `outcome` and `username` (the account
    name tried) required, `success` equal to `outcome == succeeded`, `user_id` absent only
    when no account matched, `ip` the client address as seen through the trusted proxies,
    country/device/platform only when known. One class decodes both, so consumers handle
    a topic holding either; the fields a version lacks are None.
    """

    KEY_FIELD: ClassVar[str] = "user_id"
    SCHEMA_VERSION: ClassVar[int] = 2
    SUPPORTED_VERSIONS: ClassVar[tuple[int, ...]] = (1, 2)

    # Field order is the wire order: v1's fields keep theirs (the v2-only ones are omitted
    # from a v1 event, being at their defaults), so v1 encodes byte for byte as before.
    user_id: UserId | None = None
    username: Handle | None = None
    outcome: LoginOutcome | None = None
    success: bool
    ip: Annotated[str, Meta(min_length=2, max_length=45)]
    user_agent: Annotated[str, Meta(max_length=512)] = ""
    country: CountryCode | None = None
    device_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    platform: Platform | None = None
    failure_reason: Annotated[str, Meta(max_length=64)] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schema_version == 1:
            for name in ("user_id", "country", "device_id", "platform"):
                if getattr(self, name) is None:
                    raise ValueError(f"a v1 login needs {name} - at `$.{name}`")
        else:
            for name in ("outcome", "username"):
                if getattr(self, name) is None:
                    raise ValueError(f"a v2 login needs {name} - at `$.{name}`")
        if self.outcome is not None:
            if self.success != (self.outcome is LoginOutcome.SUCCEEDED):
                raise ValueError(
                    f"success must be {not self.success} for outcome '{self.outcome}'"
                    " - at `$.success`"
                )
            if self.user_id is None and self.outcome not in _OUTCOMES_WITHOUT_ACCOUNT:
                raise ValueError(f"a '{self.outcome}' login names its account - at `$.user_id`")
            if self.user_id is not None and self.outcome is LoginOutcome.UNKNOWN_ACCOUNT:
                raise ValueError("an 'unknown_account' login has no user_id - at `$.user_id`")
        if self.success and self.failure_reason is not None:
            raise ValueError("a successful login has no failure_reason - at `$.failure_reason`")

    @property
    def account_key(self) -> str:
        """Who the attempt was aimed at: the user id when an account matched, else the
        name tried, case-folded (names compare case-insensitively)."""
        if self.user_id is not None:
            return str(self.user_id)
        return f"name:{(self.username or '').lower()}"

    def partition_key(self) -> bytes:
        # Every attempt on one account, or one unknown name, lands on one partition in order.
        return self.account_key.encode()


# ---- tweets -------------------------------------------------------------------------------


class TweetCreated(EventBase, frozen=True, kw_only=True, tag="tweet.created"):
    """A new tweet, reply or quote as the client sent it."""

    KEY_FIELD: ClassVar[str] = "tweet_id"

    tweet_id: TweetId
    author_id: UserId
    text: TweetText
    platform: Platform
    reply_to_tweet_id: TweetId | None = None
    reply_to_user_id: UserId | None = None
    quote_of_tweet_id: TweetId | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.reply_to_tweet_id is None) != (self.reply_to_user_id is None):
            raise ValueError(
                "reply_to_tweet_id and reply_to_user_id go together - at `$.reply_to_user_id`"
            )


class TweetEnriched(EventBase, frozen=True, kw_only=True, tag="tweet.enriched"):
    """A validated tweet with what ingestion extracted from it."""

    KEY_FIELD: ClassVar[str] = "tweet_id"

    tweet_id: TweetId
    author_id: UserId
    text: TweetText
    hashtags: Annotated[list[Hashtag], Meta(max_length=50)]
    mentions: Annotated[list[Handle], Meta(max_length=50)]
    lang: LanguageCode
    sentiment: Annotated[float, Meta(ge=-1.0, le=1.0)]
    source_event_id: EventId
    reply_to_tweet_id: TweetId | None = None
    reply_to_user_id: UserId | None = None
    quote_of_tweet_id: TweetId | None = None


# ---- interactions -------------------------------------------------------------------------


class InteractionAction(enum.StrEnum):
    LIKE = "like"
    UNLIKE = "unlike"
    RETWEET = "retweet"
    REPLY = "reply"
    QUOTE = "quote"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    BLOCK = "block"
    UNBLOCK = "unblock"
    MUTE = "mute"
    UNMUTE = "unmute"


TWEET_ACTIONS = frozenset(
    {
        InteractionAction.LIKE,
        InteractionAction.UNLIKE,
        InteractionAction.RETWEET,
        InteractionAction.REPLY,
        InteractionAction.QUOTE,
    }
)


class UserInteraction(EventBase, frozen=True, kw_only=True, tag="user.interaction"):
    """One user acting on a tweet (like, retweet, reply, quote) or on another user (follow,
    block, mute and their undos). `target_user_id` is always the user acted upon (a tweet
    action's target is the tweet's author), so notifications need no lookup."""

    KEY_FIELD: ClassVar[str] = "actor_id"

    actor_id: UserId
    action: InteractionAction
    target_user_id: UserId
    tweet_id: TweetId | None = None
    platform: Platform = Platform.WEB

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action in TWEET_ACTIONS:
            if self.tweet_id is None:
                raise ValueError(f"action '{self.action}' needs a tweet_id - at `$.tweet_id`")
        else:
            if self.tweet_id is not None:
                raise ValueError(
                    f"action '{self.action}' acts on a user, not a tweet - at `$.tweet_id`"
                )
            if self.actor_id == self.target_user_id:
                raise ValueError(f"a user cannot {self.action} themselves - at `$.target_user_id`")


# ---- recommendations ----------------------------------------------------------------------


class RecommendationKind(enum.StrEnum):
    WHO_TO_FOLLOW = "who_to_follow"
    TWEETS = "tweets"


class RecommendedItem(Struct, frozen=True, kw_only=True):
    item_id: Annotated[int, Meta(ge=1)]
    score: Score
    reason: Annotated[str, Meta(max_length=64)] = ""


class Recommendation(EventBase, frozen=True, kw_only=True, tag="recommendation"):
    """A ranked list of accounts to follow or tweets to show one user."""

    KEY_FIELD: ClassVar[str] = "user_id"

    user_id: UserId
    kind: RecommendationKind
    items: Annotated[list[RecommendedItem], Meta(max_length=200)]
    model: Annotated[str, Meta(min_length=1, max_length=64)]


# ---- notifications ------------------------------------------------------------------------


class NotificationKind(enum.StrEnum):
    MENTION = "mention"
    REPLY = "reply"
    LIKE = "like"
    RETWEET = "retweet"
    QUOTE = "quote"
    FOLLOW = "follow"
    DM = "dm"
    ACCOUNT_ACTIVITY = "account_activity"


class Notification(EventBase, frozen=True, kw_only=True, tag="notification"):
    """A candidate notification for one recipient; the notifier dedupes, filters and
    delivers it. `source_event_id` names the event that caused it, so the same cause can
    never notify twice."""

    KEY_FIELD: ClassVar[str] = "recipient_id"

    recipient_id: UserId
    kind: NotificationKind
    source_event_id: EventId
    actor_id: UserId | None = None
    tweet_id: TweetId | None = None
    message: Annotated[str, Meta(max_length=500)] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind is NotificationKind.ACCOUNT_ACTIVITY:
            return
        if self.actor_id is None:
            raise ValueError(f"a '{self.kind}' notification needs an actor_id - at `$.actor_id`")
        if self.actor_id == self.recipient_id:
            raise ValueError("users are never notified of their own actions - at `$.actor_id`")


# ---- trends -------------------------------------------------------------------------------


class Trend(EventBase, frozen=True, kw_only=True, tag="trend"):
    """A hashtag talked about more in a window than its baseline predicts."""

    KEY_FIELD: ClassVar[str] = "hashtag"

    hashtag: Hashtag
    window_start: EventTime
    window_end: EventTime
    count: Annotated[int, Meta(ge=0)]
    expected: Annotated[float, Meta(ge=0.0)]
    score: Score
    rank: Annotated[int, Meta(ge=1)]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start - at `$.window_end`")


# ---- activity summaries -------------------------------------------------------------------

# The top-tweet list an activity summary may carry; the interaction-analysis DAG ranks this
# many, so the event and the store's `top_tweets` hold the same list.
MAX_TOP_TWEETS = 100
Count = Annotated[int, Meta(ge=0)]


class TweetEngagement(Struct, frozen=True, kw_only=True):
    tweet_id: TweetId
    # Net weighted engagement (reply 27, retweet and quote 2, like 1, unlike -1): a tweet
    # ranks only when its net is positive.
    score: Annotated[float, Meta(gt=0.0, le=1e12)]


class ActivitySummary(EventBase, frozen=True, kw_only=True, tag="activity.summary"):
    """The aggregates of one data interval of `user.interactions`: totals by action, active
    users, engagement and the most engaged tweets. One per interval: a re-run of the
    interval sends the same `event_id` again, so consumers dedupe it. Actions that did not
    occur are absent from `actions`."""

    # Keyed by the interval, so every run of one interval lands on the same partition.
    KEY_FIELD: ClassVar[str] = "interval_start"

    interval_start: EventTime
    interval_end: EventTime
    interactions: Count
    # Records of the interval that were not valid interactions (they went to the DLQ).
    invalid_records: Count
    actions: Annotated[dict[InteractionAction, Count], Meta(max_length=len(InteractionAction))]
    active_users: Count
    users_engaged: Count
    engaged_tweets: Count
    engagement_total: Score
    top_tweets: Annotated[list[TweetEngagement], Meta(max_length=MAX_TOP_TWEETS)]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interval_end <= self.interval_start:
            raise ValueError("interval_end must be after interval_start - at `$.interval_end`")
        if sum(self.actions.values()) != self.interactions:
            # Every valid interaction has exactly one action.
            raise ValueError(
                f"interactions ({self.interactions}) must equal the sum of actions"
                f" ({sum(self.actions.values())}) - at `$.interactions`"
            )
        # Consumers read the list as a ranking: highest score first, ties by tweet id, each
        # tweet once (the order the DAG ranks in).
        ranks = [(-tweet.score, tweet.tweet_id) for tweet in self.top_tweets]
        for position in range(1, len(ranks)):
            if ranks[position] <= ranks[position - 1]:
                raise ValueError(
                    "top_tweets must be ranked by score (highest first, ties by tweet_id)"
                    f" without repeats - at `$.top_tweets[{position}]`"
                )


Event = (
    UserLogin
    | TweetCreated
    | TweetEnriched
    | UserInteraction
    | Recommendation
    | Notification
    | Trend
    | ActivitySummary
)

EVENT_TYPES: tuple[type[EventBase], ...] = (
    UserLogin,
    TweetCreated,
    TweetEnriched,
    UserInteraction,
    Recommendation,
    Notification,
    Trend,
    ActivitySummary,
)


def new_event(
    event_class: type[E],
    *,
    event_time: datetime | None = None,
    event_id: uuid.UUID | None = None,
    **fields: Any,
) -> E:
    """Build an event with a fresh id, the class's current schema version and the current
    time, so producers cannot forget any of the three."""
    return event_class(
        event_id=event_id or uuid.uuid4(),
        schema_version=event_class.SCHEMA_VERSION,
        event_time=event_time or datetime.now(UTC),
        **fields,
    )


def supports_version(event_class: type[EventBase], version: object) -> bool:
    """Whether `event_class` decodes `version` (a bool is not a version, though 1 == True)."""
    return type(version) is int and version in event_class.SUPPORTED_VERSIONS


def supported_versions_text(event_class: type[EventBase]) -> str:
    return ", ".join(str(v) for v in event_class.SUPPORTED_VERSIONS)


def type_tag(event_class: type[EventBase]) -> str:
    """The `type` value that selects this schema on the wire."""
    tag = msgspec.inspect.type_info(event_class).tag  # type: ignore[attr-defined]
    assert isinstance(tag, str)
    return tag


def json_schema_components(
    event_types: tuple[type[EventBase], ...], ref_template: str = "#/components/schemas/{name}"
) -> dict[str, Any]:
    """JSON Schemas (for API documents) of `event_types` and the types they use, as msgspec
    derives them, with `schema_version` narrowed to the versions each class decodes: the
    field is a plain int in code, but any other value is refused."""
    _, components = msgspec.json.schema_components(event_types, ref_template=ref_template)
    for event_class in event_types:
        schema = components[event_class.__name__]
        schema["properties"]["schema_version"] = {"enum": list(event_class.SUPPORTED_VERSIONS)}
    return components
