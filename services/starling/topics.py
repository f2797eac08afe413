"""The topic catalog: the one definition of every Kafka topic Starling uses.

The Pulumi program turns it into `KafkaTopic` resources, the local broker creates it,
services take their topic names from it and `docs/topics.md` is generated from it.
Replication is decided per cluster (`for_cluster`) so the same catalog serves a one-node
dev cluster and a three-broker production one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from starling.events.schemas import (
    ActivitySummary,
    EventBase,
    Notification,
    Recommendation,
    Trend,
    TweetCreated,
    TweetEnriched,
    UserInteraction,
    UserLogin,
    type_tag,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DLQ_SUFFIX = ".dlq"


class CleanupPolicy(enum.StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class TopicSpec:
    """One logical topic. `replicas`/`min_insync_replicas` are the production targets;
    `for_cluster` caps them to what a smaller cluster can hold."""

    name: str
    description: str
    event_types: tuple[type[EventBase], ...]
    key: str
    partitions: int
    retention_ms: int
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    replicas: int = 3
    min_insync_replicas: int = 2
    # A dead-letter topic receives what consumers of this topic could not process.
    has_dlq: bool = True
    dlq_retention_ms: int = 14 * DAY_MS
    extra_config: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1, got {self.partitions}")
        if not 1 <= self.min_insync_replicas <= self.replicas:
            raise ValueError(
                f"topic {self.name}: min_insync_replicas must be in 1..replicas ({self.replicas}),"
                f" got {self.min_insync_replicas}"
            )

    @property
    def dlq_name(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def event_type_tags(self) -> tuple[str, ...]:
        return tuple(type_tag(cls) for cls in self.event_types)

    def kafka_config(self) -> dict[str, str]:
        """Topic-level Kafka configs (what `KafkaTopic.spec.config` and the admin API take)."""
        config = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy.value,
            "min.insync.replicas": str(self.min_insync_replicas),
        }
        config.update(self.extra_config)
        return config

    def dlq_spec(self) -> TopicSpec:
        """Dead letters are few and read by people: few partitions, longer retention."""
        return TopicSpec(
            name=self.dlq_name,
            description=f"dead letters of {self.name}: original payload, error in headers",
            event_types=(),
            key=f"the original {self.name} key",
            partitions=min(self.partitions, 3),
            retention_ms=self.dlq_retention_ms,
            replicas=self.replicas,
            min_insync_replicas=self.min_insync_replicas,
            has_dlq=False,
        )


@dataclass(frozen=True)
class TopicCatalog:
    topics: tuple[TopicSpec, ...]

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.all_topics()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate topic names in the catalog: {duplicates}")

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics)

    def all_topics(self) -> Iterator[TopicSpec]:
        """Every topic including the dead-letter topics."""
        for spec in self.topics:
            yield spec
            if spec.has_dlq:
                yield spec.dlq_spec()

    def names(self) -> frozenset[str]:
        return frozenset(spec.name for spec in self.all_topics())

    def get(self, name: str) -> TopicSpec:
        for spec in self.all_topics():
            if spec.name == name:
                return spec
        raise KeyError(f"unknown topic {name!r}; the catalog has: {sorted(self.names())}")

    def topic_for(self, event_type: type[EventBase]) -> TopicSpec:
        """The topic that carries `event_type` (each event type has exactly one home)."""
        homes = [spec for spec in self.topics if event_type in spec.event_types]
        if len(homes) != 1:
            raise LookupError(f"{event_type.__name__} is carried by {len(homes)} topics, not 1")
        return homes[0]

    def for_cluster(self, brokers: int) -> TopicCatalog:
        """The catalog with replication capped to a cluster of `brokers` brokers: RF is
        min(target, brokers) and min ISR keeps one replica of slack where it can."""
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        scaled = []
        for spec in self.topics:
            replicas = min(spec.replicas, brokers)
            min_isr = max(1, min(spec.min_insync_replicas, replicas - 1))
            scaled.append(replace(spec, replicas=replicas, min_insync_replicas=min_isr))
        return TopicCatalog(tuple(scaled))


LOGINS = "user.logins"
TWEETS = "tweets"
TWEETS_ENRICHED = "tweets.enriched"
INTERACTIONS = "user.interactions"
RECOMMENDATIONS = "recommendations"
NOTIFICATIONS = "notifications"
TRENDS = "trends"
ACTIVITY_SUMMARIES = "activity.summaries"

CATALOG = TopicCatalog(
    (
        TopicSpec(
            name=LOGINS,
            description="sign-in attempts (every outcome) recorded by the identity service;"
            " drive the event-driven login DAG",
            event_types=(UserLogin,),
            # A sign-in under a name that matches no account has no user id.
            key="user_id, else name:<username>",
            partitions=6,
            retention_ms=7 * DAY_MS,
        ),
        TopicSpec(
            name=TWEETS,
            description="tweets, replies and quotes as clients sent them",
            event_types=(TweetCreated,),
            key="tweet_id",
            partitions=12,
            retention_ms=7 * DAY_MS,
        ),
        TopicSpec(
            name=TWEETS_ENRICHED,
            description="validated tweets with hashtags, mentions, language and sentiment",
            event_types=(TweetEnriched,),
            key="tweet_id",
            partitions=12,
            retention_ms=7 * DAY_MS,
        ),
        TopicSpec(
            name=INTERACTIONS,
            description="likes, retweets, replies, quotes, follows, blocks, mutes and undos",
            event_types=(UserInteraction,),
            key="actor_id",
            partitions=12,
            retention_ms=7 * DAY_MS,
        ),
        TopicSpec(
            name=RECOMMENDATIONS,
            description="who-to-follow and tweet recommendations computed by Airflow",
            event_types=(Recommendation,),
            key="user_id",
            partitions=6,
            retention_ms=3 * DAY_MS,
        ),
        TopicSpec(
            name=NOTIFICATIONS,
            description="candidate notifications, deduped and delivered by the notifier",
            event_types=(Notification,),
            key="recipient_id",
            partitions=6,
            retention_ms=3 * DAY_MS,
        ),
        TopicSpec(
            name=TRENDS,
            description="hashtags trending above their baseline, per window",
            event_types=(Trend,),
            key="hashtag",
            partitions=3,
            retention_ms=1 * DAY_MS,
        ),
        TopicSpec(
            name=ACTIVITY_SUMMARIES,
            description="per-interval interaction aggregates (totals by action, active users,"
            " most engaged tweets) from the interaction-analysis DAG",
            event_types=(ActivitySummary,),
            key="interval_start",
            # One event an hour: a single partition is plenty and keeps the summaries in
            # the order they were produced for readers that chart them over time.
            partitions=1,
            # As long as the interactions they summarise: an interval can be re-run (and
            # its summary re-sent) only while its source records are retained.
            retention_ms=7 * DAY_MS,
        ),
    )
)
