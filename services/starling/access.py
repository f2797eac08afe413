"""The access map: which service or workflow may read and write which topic.

It is the one source of the per-principal `KafkaUser` ACLs, of each service's consumer
group, and of the access table in the docs. A principal that reads a topic may write that
topic's dead-letter topic (that is where its failures go) unless it never dead-letters;
nothing else is implied. Every grant is one some code uses: the integration test
`tests/airflow/test_acl_usage.py` runs each principal's code against a broker that
enforces these ACLs and fails on a grant no run used, unless `UNUSED_GRANTS` says why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from starling.topics import (
    ACTIVITY_SUMMARIES,
    CATALOG,
    INTERACTIONS,
    LOGINS,
    NOTIFICATIONS,
    RECOMMENDATIONS,
    TRENDS,
    TWEETS,
    TWEETS_ENRICHED,
    TopicCatalog,
)


class Operation(enum.StrEnum):
    """Kafka ACL operations (the names Strimzi's KafkaUser `operations` list takes)."""

    READ = "Read"
    WRITE = "Write"
    DESCRIBE = "Describe"


class PrincipalKind(enum.StrEnum):
    SERVICE = "service"
    WORKFLOW = "workflow"
    # Clients simulated in development and tests; never deployed to production.
    DEV_TOOL = "dev-tool"


@dataclass(frozen=True)
class Principal:
    name: str
    kind: PrincipalKind
    description: str
    reads: frozenset[str]
    writes: frozenset[str]
    # Workflows run one consumer group per DAG task family, so they get a group prefix
    # (`starling-airflow-...`, separator included) instead of one literal group.
    group_is_prefix: bool = False
    # Principals whose consumer progress this one may watch (a consumer-lag sensor):
    # Describe on their group and on the topics they read, never Read.
    observes: frozenset[str] = frozenset()
    # False for a reader that skips what it cannot use instead of dead-lettering it.
    dead_letters: bool = True
    # False for a reader that assigns partitions itself: it never joins, commits to or
    # fetches offsets of its group, but the client still looks up the group's
    # coordinator (a `group.id` is mandatory), which needs Describe on it, not Read.
    joins_group: bool = True

    @property
    def consumer_group(self) -> str | None:
        """Consumer groups are named after the principal, so an ACL can name them exactly."""
        return f"starling-{self.name}" if self.reads else None

    @property
    def group_acl_name(self) -> str | None:
        """The group ACL's resource: the literal group, or for a workflow the prefix with its
        separator (`starling-airflow-`), so `starling-airflowX...` does not match."""
        group = self.consumer_group
        if group is None:
            return None
        return f"{group}-" if self.group_is_prefix else group

    def writable_topics(self, catalog: TopicCatalog = CATALOG) -> frozenset[str]:
        """Declared writes plus the dead-letter topic of every topic it reads (if it
        dead-letters)."""
        if not self.dead_letters:
            return self.writes
        dlqs = {catalog.get(topic).dlq_name for topic in self.reads if catalog.get(topic).has_dlq}
        return self.writes | dlqs

    def acl_rules(self, catalog: TopicCatalog = CATALOG) -> list[AclRule]:
        """Least-privilege rules: literal topic names, literal group name, nothing more."""
        rules: list[AclRule] = []
        for topic in sorted(self.reads):
            rules.append(AclRule("topic", topic, (Operation.READ, Operation.DESCRIBE)))
        for topic in sorted(self.writable_topics(catalog)):
            rules.append(AclRule("topic", topic, (Operation.WRITE, Operation.DESCRIBE)))
        if self.group_acl_name:
            pattern = PatternType.PREFIX if self.group_is_prefix else PatternType.LITERAL
            group_ops = (Operation.READ,) if self.joins_group else (Operation.DESCRIBE,)
            rules.append(AclRule("group", self.group_acl_name, group_ops, pattern))
        for observed in sorted(self.observes):
            watched = principal(observed)
            if watched.consumer_group is None:
                raise ValueError(f"{self.name} observes {observed!r}, which consumes nothing")
            for topic in sorted(watched.reads - self.reads - self.writable_topics(catalog)):
                rules.append(AclRule("topic", topic, (Operation.DESCRIBE,)))
            rules.append(AclRule("group", watched.consumer_group, (Operation.DESCRIBE,)))
        return rules


class PatternType(enum.StrEnum):
    LITERAL = "literal"
    PREFIX = "prefix"


@dataclass(frozen=True)
class AclRule:
    resource_type: str  # "topic" or "group"
    resource_name: str
    operations: tuple[Operation, ...]
    pattern: PatternType = PatternType.LITERAL


def _principal(
    name: str,
    kind: PrincipalKind,
    description: str,
    reads: tuple[str, ...] = (),
    writes: tuple[str, ...] = (),
    group_is_prefix: bool = False,
    observes: tuple[str, ...] = (),
    dead_letters: bool = True,
    joins_group: bool = True,
) -> Principal:
    return Principal(
        name,
        kind,
        description,
        frozenset(reads),
        frozenset(writes),
        group_is_prefix,
        frozenset(observes),
        dead_letters,
        joins_group,
    )


PRINCIPALS: tuple[Principal, ...] = (
    _principal(
        "gateway",
        PrincipalKind.SERVICE,
        "accepts client actions and produces them; serves timelines, trends and "
        "notifications, and pushes trend updates live",
        reads=(TRENDS,),
        # Not logins: a login is a fact the identity service records, never a client claim.
        writes=(TWEETS, INTERACTIONS),
        # The live trends feed skips a record that is not a trend (and counts it).
        dead_letters=False,
        # Every pod reads every partition of `trends` by assign() (gateway/feeds.py).
        joins_group=False,
    ),
    _principal(
        "identity",
        PrincipalKind.SERVICE,
        "the built-in identity service: accounts, sign-in and sign-out; records every "
        "sign-in attempt, successful or not, as a login",
        writes=(LOGINS,),
    ),
    _principal(
        "ingestion",
        PrincipalKind.SERVICE,
        "validates and enriches tweets, fans out to timelines, emits mention/reply candidates",
        reads=(TWEETS,),
        writes=(TWEETS_ENRICHED, NOTIFICATIONS),
    ),
    _principal(
        "trends",
        PrincipalKind.SERVICE,
        "windowed hashtag counts with burst detection",
        reads=(TWEETS_ENRICHED,),
        writes=(TRENDS,),
    ),
    _principal(
        "timelines",
        PrincipalKind.SERVICE,
        "merges recommendations into home timelines",
        reads=(RECOMMENDATIONS,),
    ),
    _principal(
        "notifier",
        PrincipalKind.SERVICE,
        "dedupes, filters, caps and delivers notifications; consumes interactions for "
        "like/retweet/follow candidates",
        reads=(NOTIFICATIONS, INTERACTIONS),
    ),
    _principal(
        "airflow",
        PrincipalKind.WORKFLOW,
        "interaction analysis, recommendations, login handling, cleaning and sentiment DAGs",
        reads=(LOGINS, INTERACTIONS, TWEETS_ENRICHED),
        writes=(RECOMMENDATIONS, NOTIFICATIONS, ACTIVITY_SUMMARIES),
        group_is_prefix=True,
        # The cleaning DAG waits for ingestion to catch up before it re-scores.
        observes=("ingestion",),
    ),
    _principal(
        "loadgen",
        PrincipalKind.DEV_TOOL,
        "synthetic clients: the traffic generator (dev and test clusters only)",
        writes=(LOGINS, TWEETS, INTERACTIONS),
    ),
)


# Topics no principal of ours reads, each with the reason it exists anyway.
UNREAD_TOPICS: dict[str, str] = {
    ACTIVITY_SUMMARIES: "hourly interaction aggregates published for analytics consumers "
    "outside Starling; the page does not show them",
}

# Grants the usage test may find unused, each with the reason it is kept:
# (principal, resource type, resource name, operation) -> why.
UNUSED_GRANTS: dict[tuple[str, str, str, Operation], str] = {}


def principal(name: str) -> Principal:
    for candidate in PRINCIPALS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown principal {name!r}; known: {[p.name for p in PRINCIPALS]}")


def validate_access_map(
    principals: tuple[Principal, ...] = PRINCIPALS, catalog: TopicCatalog = CATALOG
) -> None:
    """Every topic named exists, and every non-DLQ topic has a writer and a reader."""
    known = catalog.names()
    for p in principals:
        unknown = sorted((p.reads | p.writes) - known)
        if unknown:
            raise ValueError(f"principal {p.name!r} names unknown topics {unknown}")
        strangers = sorted(p.observes - {other.name for other in principals})
        if strangers:
            raise ValueError(f"principal {p.name!r} observes unknown principals {strangers}")
    for spec in catalog:
        if not any(spec.name in p.writes for p in principals):
            raise ValueError(f"topic {spec.name!r} has no writer in the access map")
        if spec.name not in UNREAD_TOPICS and not any(spec.name in p.reads for p in principals):
            raise ValueError(f"topic {spec.name!r} has no reader in the access map")


validate_access_map()
