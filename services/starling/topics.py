"""The topic catalog: the one definition of every Kafka topic Starling uses.

The Pulumi program turns it into `KafkaTopic` resources, the local broker creates it,
services take their topic names from it and `docs/topics.md` is generated from it.
Replication is decided per cluster (`for_cluster`, from one `Replication` value) so the same
catalog serves a one-node dev cluster and a three-broker production one, and the Kafka
resource's defaults and every topic's settings cannot disagree.
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
# Kafka's own spelling of "keep forever" for retention.ms.
RETAIN_FOREVER = -1


@dataclass(frozen=True)
class Replication:
    """How a cluster replicates: `default.replication.factor`/`min.insync.replicas` on the
    Kafka resource and `replicas`/`min.insync.replicas` of every catalog topic."""

    factor: int
    min_insync: int

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"replication factor must be >= 1, got {self.factor}")
        if not 1 <= self.min_insync <= self.factor:
            raise ValueError(
                f"min in-sync replicas must be in 1..{self.factor} (the replication factor), "
                f"got {self.min_insync}"
            )

    @classmethod
    def for_brokers(
        cls, brokers: int, factor: int | None = None, min_insync: int | None = None
    ) -> Replication:
        """RF min(3, brokers) and min ISR one below it (at least 1) unless given: one broker
        may always be down (a rolling restart) without failing acks=all writes."""
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        rf = factor if factor is not None else min(3, brokers)
        return cls(rf, min_insync if min_insync is not None else max(1, min(2, rf - 1)))

    def tolerates_one_broker_loss(self) -> bool:
        return self.factor >= 2 and self.min_insync <= self.factor - 1


class CleanupPolicy(enum.StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class TopicSpec:
    """One logical topic. `replicas`/`min_insync_replicas` are the production targets
    (`Replication.for_brokers(3)`); `for_cluster` replaces them with the cluster's
    replication, which is what a deployed topic gets."""

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
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int):
            raise ValueError(
                f"topic {self.name}: partitions must be a whole number, got {self.partitions!r}"
            )
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1, got {self.partitions}")
        for label, value in (
            ("retention_ms", self.retention_ms),
            ("dlq_retention_ms", self.dlq_retention_ms),
        ):
            # 0 would delete every record as soon as it is written; other negatives mean
            # nothing to Kafka. -1 is Kafka's "keep forever".
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"topic {self.name}: {label} must be whole milliseconds")
            if value < 1 and value != RETAIN_FOREVER:
                raise ValueError(
                    f"topic {self.name}: {label} must be a positive number of milliseconds, "
                    f"or {RETAIN_FOREVER} to keep records forever; got {value}"
                )
        if self.replicas < 1:
            raise ValueError(f"topic {self.name}: replicas must be >= 1, got {self.replicas}")
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

    def for_cluster(self, brokers: int, replication: Replication | None = None) -> TopicCatalog:
        """The catalog as a cluster of `brokers` brokers holds it: every topic takes the
        cluster's `replication` (by default `Replication.for_brokers(brokers)`, what the Kafka
        resource gets when the stack sets nothing), so per-topic and cluster-wide settings
        come from one value."""
        chosen = replication or Replication.for_brokers(brokers)
        if chosen.factor > brokers:
            raise ValueError(
                f"replication factor {chosen.factor} exceeds the cluster's {brokers} broker(s)"
            )
        return TopicCatalog(
            tuple(
                replace(spec, replicas=chosen.factor, min_insync_replicas=chosen.min_insync)
                for spec in self.topics
            )
        )


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
