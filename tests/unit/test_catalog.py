"""Topic catalog and access map: internal consistency, scaling, ACL derivation, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from starling.access import (
    PRINCIPALS,
    Operation,
    PatternType,
    Principal,
    PrincipalKind,
    principal,
    validate_access_map,
)
from starling.catalog_docs import render_markdown
from starling.cli import main
from starling.events import EVENT_TYPES
from starling.topics import CATALOG, TopicCatalog, TopicSpec

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "topics.md"


def test_every_event_type_has_exactly_one_home_topic() -> None:
    for event_type in EVENT_TYPES:
        assert CATALOG.topic_for(event_type).name  # raises unless exactly one


def test_every_topic_has_a_dead_letter_topic_with_longer_retention() -> None:
    names = CATALOG.names()
    for spec in CATALOG:
        assert spec.dlq_name in names
        assert CATALOG.get(spec.dlq_name).retention_ms > spec.retention_ms


def test_production_targets_are_durable() -> None:
    # RF 3 with min ISR 2 is what survives one broker loss without losing acked writes.
    for spec in CATALOG.all_topics():
        assert (spec.replicas, spec.min_insync_replicas) == (3, 2)
        assert spec.kafka_config()["min.insync.replicas"] == "2"


@pytest.mark.parametrize(("brokers", "rf", "min_isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_replication_is_capped_to_the_cluster(brokers: int, rf: int, min_isr: int) -> None:
    scaled = CATALOG.for_cluster(brokers)
    for spec in scaled.all_topics():
        assert (spec.replicas, spec.min_insync_replicas) == (rf, min_isr)
    assert [s.name for s in scaled.all_topics()] == [s.name for s in CATALOG.all_topics()]


def test_bad_topic_definitions_fail_with_the_rule_named() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        TopicSpec(name="x", description="", event_types=(), key="k", partitions=0, retention_ms=1)
    with pytest.raises(ValueError, match=r"min_insync_replicas must be in 1\.\.replicas"):
        TopicSpec(
            name="x",
            description="",
            event_types=(),
            key="k",
            partitions=1,
            retention_ms=1,
            replicas=2,
            min_insync_replicas=3,
        )
    with pytest.raises(ValueError, match="brokers must be >= 1"):
        CATALOG.for_cluster(0)
    spec = next(iter(CATALOG))
    with pytest.raises(ValueError, match="duplicate topic names"):
        TopicCatalog((spec, spec))
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        CATALOG.get("nope")


def test_acls_grant_exactly_the_access_map_and_nothing_else() -> None:
    for p in PRINCIPALS:
        rules = p.acl_rules()
        readable = {
            r.resource_name
            for r in rules
            if r.resource_type == "topic" and Operation.READ in r.operations
        }
        writable = {
            r.resource_name
            for r in rules
            if r.resource_type == "topic" and Operation.WRITE in r.operations
        }
        assert readable == p.reads
        dlqs = {CATALOG.get(t).dlq_name for t in p.reads} if p.dead_letters else set()
        assert writable == p.writes | dlqs
        # literal topic names only: a prefix or wildcard would widen access silently
        assert all(r.pattern is PatternType.LITERAL for r in rules if r.resource_type == "topic")
        consuming = [
            r for r in rules if r.resource_type == "group" and Operation.READ in r.operations
        ]
        joined = [p.group_acl_name] if p.reads and p.joins_group else []
        assert [g.resource_name for g in consuming] == joined
        # Watching another principal's progress grants Describe only, on its group and topics.
        watched_groups = {principal(o).consumer_group for o in p.observes}
        if p.reads and not p.joins_group:
            watched_groups.add(p.consumer_group)
        describe_only = [r for r in rules if r.operations == (Operation.DESCRIBE,)]
        assert {r.resource_name for r in describe_only if r.resource_type == "group"} == (
            watched_groups
        )
        for rule in describe_only:
            if rule.resource_type == "topic":
                assert any(rule.resource_name in principal(o).reads for o in p.observes)


def test_no_service_writes_a_topic_it_only_reads() -> None:
    ingestion = principal("ingestion")
    assert "tweets" in ingestion.reads
    assert "tweets" not in ingestion.writable_topics()
    assert "tweets.dlq" in ingestion.writable_topics()


def test_only_workflows_get_a_group_prefix() -> None:
    for p in PRINCIPALS:
        assert p.group_is_prefix == (p.kind is PrincipalKind.WORKFLOW)


def test_access_map_rejects_unknown_topics_and_orphan_topics() -> None:
    bad = Principal("ghost", PrincipalKind.SERVICE, "", frozenset({"no.such.topic"}), frozenset())
    with pytest.raises(ValueError, match="unknown topics"):
        validate_access_map((*PRINCIPALS, bad))
    without_trend_readers = tuple(p for p in PRINCIPALS if "trends" not in p.reads)
    with pytest.raises(ValueError, match="'trends' has no reader"):
        validate_access_map(without_trend_readers)
    with pytest.raises(KeyError, match="unknown principal"):
        principal("nobody")
    watcher = Principal(
        "watcher", PrincipalKind.SERVICE, "", frozenset(), frozenset(), observes=frozenset({"x"})
    )
    with pytest.raises(ValueError, match="observes unknown principals"):
        validate_access_map((*PRINCIPALS, watcher))


def test_airflow_may_watch_ingestion_progress_but_not_read_its_topic() -> None:
    rules = principal("airflow").acl_rules()
    tweets = [r for r in rules if r.resource_name == "tweets"]
    assert [r.operations for r in tweets] == [(Operation.DESCRIBE,)]
    group = [r for r in rules if r.resource_name == "starling-ingestion"]
    assert [(r.resource_type, r.operations) for r in group] == [("group", (Operation.DESCRIBE,))]


def test_docs_page_is_generated_from_the_catalog() -> None:
    assert DOCS.read_text() == render_markdown(), (
        "docs/topics.md is stale: run `uv run starling topics --markdown > docs/topics.md`"
    )


def test_topics_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "--json", "--brokers", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == CATALOG.names()
    assert all(row["replicas"] == 1 for row in rows)


def test_topics_command_rejects_a_bad_broker_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["topics", "--brokers", "zero"])
    assert "--brokers: expected a whole number, got 'zero'" in capsys.readouterr().err


def test_gateway_reads_trends_only_never_dead_letters_and_never_joins_its_group() -> None:
    rules = {
        (r.resource_type, r.resource_name, op)
        for r in principal("gateway").acl_rules()
        for op in r.operations
    }
    assert rules == {
        ("topic", "trends", Operation.READ),
        ("topic", "trends", Operation.DESCRIBE),
        ("topic", "tweets", Operation.WRITE),
        ("topic", "tweets", Operation.DESCRIBE),
        ("topic", "user.interactions", Operation.WRITE),
        ("topic", "user.interactions", Operation.DESCRIBE),
        ("group", "starling-gateway", Operation.DESCRIBE),
    }


def test_airflow_group_prefix_ends_at_the_separator_its_groups_use() -> None:
    from starling_operators import settings

    [group] = [r for r in principal("airflow").acl_rules() if r.operations == (Operation.READ,)]
    assert (group.resource_type, group.pattern) == ("group", PatternType.PREFIX)
    assert group.resource_name == "starling-airflow-"
    assert not "starling-airflowX-evil".startswith(group.resource_name)
    assert settings.group_id("interaction-analysis").startswith(group.resource_name)


def test_a_topic_without_readers_needs_a_stated_reason() -> None:
    from starling.access import UNREAD_TOPICS

    assert not any("activity.summaries" in p.reads for p in PRINCIPALS)
    assert UNREAD_TOPICS["activity.summaries"]
    for topic in UNREAD_TOPICS:
        assert topic in CATALOG.names()


def test_every_exempted_unused_grant_is_a_grant_with_a_reason() -> None:
    from starling.access import UNUSED_GRANTS

    granted = {
        (p.name, rule.resource_type, rule.resource_name, op)
        for p in PRINCIPALS
        for rule in p.acl_rules()
        for op in rule.operations
    }
    for grant, reason in UNUSED_GRANTS.items():
        assert grant in granted, f"{grant} is exempted but not granted"
        assert reason.strip(), f"{grant} is exempted without a reason"
