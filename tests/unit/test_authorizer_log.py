"""The harness reads the broker's authorizer log: which ACL allowed what, and denials."""

from __future__ import annotations

import pytest

from starling.harness.kafka import AuthorizerDecision, parse_authorizer_log

pytestmark = pytest.mark.unit

# Lines as Kafka 4's StandardAuthorizer writes them to `kafka.authorizer.logger`.
ALLOWED = (
    "[2026-12-02 09:54:55,344] DEBUG Principal = User:gateway is Allowed operation = DESCRIBE "
    "from host = 127.0.0.1 on resource = Group:LITERAL:starling-gateway for request = "
    "FindCoordinator with resourceRefCount = 1 based on rule MatchingAcl(acl=StandardAcl["
    "resourceType=GROUP, resourceName=starling-gateway, patternType=LITERAL, "
    "principal=User:gateway, host=*, operation=DESCRIBE, permissionType=ALLOW])"
)
PREFIXED = (
    "[2026-12-02 09:56:05,001] DEBUG Principal = User:airflow is Allowed operation = READ "
    "from host = 127.0.0.1 on resource = Group:LITERAL:starling-airflow-recs for request = "
    "OffsetCommit with resourceRefCount = 1 based on rule MatchingAcl(acl=StandardAcl["
    "resourceType=GROUP, resourceName=starling-airflow-, patternType=PREFIXED, "
    "principal=User:airflow, host=*, operation=READ, permissionType=ALLOW])"
)
DENIED = (
    "[2026-12-02 09:57:00,000] INFO Principal = User:gateway is Denied operation = READ from "
    "host = 127.0.0.1 on resource = Topic:LITERAL:activity.summaries for request = Fetch with "
    "resourceRefCount = 1 based on rule DefaultDeny"
)
SUPER_USER = (
    "[2026-12-02 09:57:00,000] DEBUG Principal = User:ANONYMOUS is Allowed operation = "
    "CLUSTER_ACTION from host = 127.0.0.1 on resource = Cluster:LITERAL:kafka-cluster for "
    "request = Fetch with resourceRefCount = 1 based on rule SuperUser"
)


def test_allowed_operations_name_the_acl_that_allowed_them() -> None:
    decisions = parse_authorizer_log("\n".join([ALLOWED, "unrelated line", PREFIXED]))
    assert decisions == [
        AuthorizerDecision(
            principal="User:gateway",
            allowed=True,
            operation="DESCRIBE",
            resource="Group:LITERAL:starling-gateway",
            acl=("GROUP", "starling-gateway", "LITERAL", "DESCRIBE"),
        ),
        AuthorizerDecision(
            principal="User:airflow",
            allowed=True,
            operation="READ",
            resource="Group:LITERAL:starling-airflow-recs",
            acl=("GROUP", "starling-airflow-", "PREFIXED", "READ"),
        ),
    ]


def test_denials_and_super_users_carry_no_acl() -> None:
    denied, super_user = parse_authorizer_log(f"{DENIED}\n{SUPER_USER}")
    assert (denied.allowed, denied.acl, denied.resource) == (
        False,
        None,
        "Topic:LITERAL:activity.summaries",
    )
    assert (super_user.allowed, super_user.acl) == (True, None)
