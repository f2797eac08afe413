"""Each KafkaUser's ACLs are exactly the access map: nothing more, nothing less."""

from __future__ import annotations

import pytest

from starling.access import PRINCIPALS, Operation, Principal
from starling.topics import CATALOG
from tests.unit.infra.harness import ProgramRun

pytestmark = pytest.mark.unit

Grant = tuple[str, str, str, str]  # (resource type, name, pattern type, operation)


def _granted(user: dict[str, object]) -> set[Grant]:
    grants: set[Grant] = set()
    for acl in user["spec"]["authorization"]["acls"]:  # type: ignore[index]
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow"
        assert acl.get("host", "*") == "*"
        for operation in acl["operations"]:
            grants.add((resource["type"], resource["name"], resource["patternType"], operation))
    return grants


def _expected(principal: Principal, brokers: int) -> set[Grant]:
    catalog = CATALOG.for_cluster(brokers)
    return {
        (rule.resource_type, rule.resource_name, rule.pattern.value, operation.value)
        for rule in principal.acl_rules(catalog)
        for operation in rule.operations
    }


def _users(run: ProgramRun) -> dict[str, dict[str, object]]:
    return {u.inputs["metadata"]["name"]: u.inputs for u in run.of_kind("KafkaUser")}


def test_acls_equal_the_access_map(stack_run: ProgramRun) -> None:
    brokers = 1 if stack_run.stack == "dev" else 3
    users = _users(stack_run)
    for principal in PRINCIPALS:
        name = f"starling-{principal.name}"
        if name not in users:
            continue
        granted = _granted(users[name])
        expected = _expected(principal, brokers)
        assert granted - expected == set(), f"{name} has grants the access map does not list"
        assert expected - granted == set(), f"{name} lacks grants the access map lists"


def test_nobody_writes_a_topic_it_is_not_listed_for(stack_run: ProgramRun) -> None:
    by_name = {f"starling-{p.name}": p for p in PRINCIPALS}
    for name, user in _users(stack_run).items():
        principal = by_name[name]
        written = {
            grant[1]
            for grant in _granted(user)
            if grant[0] == "topic" and grant[3] == Operation.WRITE.value
        }
        assert written == set(principal.writable_topics(CATALOG)), name
        read = {g[1] for g in _granted(user) if g[0] == "topic" and g[3] == Operation.READ.value}
        assert read == set(principal.reads), name


def test_only_literal_names_except_the_workflow_group_prefix(stack_run: ProgramRun) -> None:
    for name, user in _users(stack_run).items():
        for kind, resource, pattern, _ in _granted(user):
            if pattern == "prefix":
                # With its separator: `starling-airflowX...` must not match.
                assert (kind, resource) == ("group", "starling-airflow-"), name
            assert kind in {"topic", "group"}, name
            if kind == "topic":
                assert resource in CATALOG.names(), (name, resource)


def test_no_operation_beyond_read_write_describe(stack_run: ProgramRun) -> None:
    allowed = {op.value for op in Operation}
    for name, user in _users(stack_run).items():
        assert {grant[3] for grant in _granted(user)} <= allowed, name


def test_gateway_may_not_read_summaries_dead_letter_or_join_a_group(
    stack_run: ProgramRun,
) -> None:
    granted = _granted(_users(stack_run)["starling-gateway"])
    assert {g for g in granted if g[1] == "activity.summaries"} == set()
    assert {g[1] for g in granted if g[1].endswith(".dlq")} == set()
    assert ("group", "starling-gateway", "literal", "Read") not in granted


def test_airflow_connection_group_is_inside_the_acl_prefix(stack_run: ProgramRun) -> None:
    import json

    prefixes = {
        g[1]
        for g in _granted(_users(stack_run)["starling-airflow"])
        if g[0] == "group" and g[2] == "prefix"
    }
    assert prefixes == {"starling-airflow-"}
    # Airflow reads its connections from one file (LocalFilesystemBackend).
    secret = stack_run.named("airflow-connections")
    connection = json.loads(secret.inputs["stringData"]["connections.json"])["kafka_default"]
    assert connection["extra_dejson"]["group.id"].startswith("starling-airflow-")
