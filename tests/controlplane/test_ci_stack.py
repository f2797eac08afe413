"""`pulumi preview`, `up`, a no-op `up`, a config change and `destroy` of the `ci` stack
against a real API server, with what was created read back and checked against the topic
catalog and the access map.

The tests run in file order and share one stack (module scope): each step starts from what
the previous one left, as a person running the commands would. Progress lines show each
pulumi command and its duration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import OpType

from starling.access import PRINCIPALS
from starling.harness.controlplane import (
    ControlPlane,
    KubeApi,
    wait_for,
)
from starling.runtime.config import SERVICE_NAMES as RUNNABLE_SERVICES
from starling.topics import CATALOG
from tests.controlplane.pulumi_runner import SKIP_AWAIT_ANNOTATION, CiStack, StepLog

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(3600)]

NAMESPACE = "starling"
OUR_NAMESPACES = ("starling", "starling-airflow", "strimzi")
STRIMZI = "/apis/kafka.strimzi.io/v1"
SERVICES_IMAGE = "starling/services:0.1.0"
# One broker (the ci stack): for_cluster caps every topic's replication factor to 1.
CI_CATALOG = CATALOG.for_cluster(1)


@pytest.fixture(scope="module")
def ci(new_ci_stack: Callable[[str], CiStack]) -> Iterator[CiStack]:
    stack = new_ci_stack("ci-stack")
    yield stack
    # Whatever a failed test left: remove it so the session's cluster stays usable.
    if stack.outputs():
        stack.destroy()


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[KubeApi]:
    with control_plane.api() as client:
        yield client


def _items(api: KubeApi, group_version: str, plural: str) -> dict[str, dict[str, Any]]:
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    found = api.list(f"{prefix}/namespaces/{NAMESPACE}/{plural}")
    return {item["metadata"]["name"]: item for item in found}


def _absent(api: KubeApi, path: str) -> Callable[[], bool]:
    return lambda: api.get_or_none(path) is None


def test_cli_accepts_the_project_file_and_stack_config(
    control_plane: ControlPlane,
    pulumi_tools: dict[str, Path],
    stack_seed: str,
    tmp_path_factory: pytest.TempPathFactory,
    live: Callable[[str], None],
) -> None:
    # Runs first and alone (its own scratch backend) with the project file exactly as
    # committed: the CLI once rejected its config declarations before the program ran.
    stack = CiStack(
        scratch=tmp_path_factory.mktemp("ci-declarations"),
        kubeconfig=control_plane.kubeconfig,
        pulumi_binary=pulumi_tools["pulumi"],
        provider_binary=pulumi_tools["pulumi-resource-kubernetes"],
        seed=stack_seed,
        report=live,
    )
    stack.preview()


def test_preview_plans_the_program_without_errors(ci: CiStack) -> None:
    result, log = ci.preview()
    assert not log.diagnostics
    created = result.change_summary.get(OpType.CREATE, 0)
    # Among them: every topic, every user and its password Secret (and the namespaces,
    # CRDs, Kafka, node pool, store and services release).
    assert created >= len(list(CI_CATALOG.all_topics())) + 2 * len(PRINCIPALS)
    assert set(result.change_summary) <= {OpType.CREATE}


def test_up_creates_every_resource(ci: CiStack) -> None:
    result, log = ci.up()
    assert not log.diagnostics
    assert result.summary.result == "succeeded"
    assert set(result.summary.resource_changes or {}) <= {"create"}
    outputs = ci.outputs()
    assert outputs["kafkaBootstrapServers"] == "starling-kafka-bootstrap.starling.svc:9093"
    # The program deploys only the services `starling run` can start (gateway included).
    assert ("gatewayUrl" in outputs) == ("gateway" in RUNNABLE_SERVICES)
    assert outputs["identityIssuer"] == "http://localhost:8081"
    assert "airflowUrl" not in outputs  # airflow.enabled: false in the ci stack


def test_kafka_and_node_pool_match_the_stack_config(api: KubeApi) -> None:
    kafkas = _items(api, "kafka.strimzi.io/v1", "kafkas")
    assert list(kafkas) == ["starling"]
    config = kafkas["starling"]["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 1
    assert config["min.insync.replicas"] == 1
    # kafka.waitForReady: false -> no readiness wait was requested from Pulumi.
    annotations = kafkas["starling"]["metadata"].get("annotations", {})
    assert "pulumi.com/waitFor" not in annotations
    pools = _items(api, "kafka.strimzi.io/v1", "kafkanodepools")
    assert list(pools) == ["dual-role"]
    assert sorted(pools["dual-role"]["spec"]["roles"]) == ["broker", "controller"]
    assert pools["dual-role"]["spec"]["replicas"] == 1


def test_topics_match_the_catalog(api: KubeApi) -> None:
    topics = _items(api, "kafka.strimzi.io/v1", "kafkatopics")
    expected = {topic.name: topic for topic in CI_CATALOG.all_topics()}
    assert sorted(topics) == sorted(expected)
    for name, topic in expected.items():
        spec = topics[name]["spec"]
        assert spec["topicName"] == name
        assert spec["partitions"] == topic.partitions, name
        assert spec["replicas"] == 1, name
        assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] == "starling"


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {
        (
            acl["resource"]["type"],
            acl["resource"]["name"],
            acl["resource"].get("patternType", "literal"),
            tuple(sorted(acl["operations"])),
        )
        for acl in acls
    }


def test_users_carry_exactly_the_access_map(api: KubeApi) -> None:
    users = _items(api, "kafka.strimzi.io/v1", "kafkausers")
    # kafka.devTools: true in the ci stack, so every principal of the map is deployed.
    assert sorted(users) == sorted(f"starling-{p.name}" for p in PRINCIPALS)
    for principal in PRINCIPALS:
        spec = users[f"starling-{principal.name}"]["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        expected = {
            (
                rule.resource_type,
                rule.resource_name,
                rule.pattern.value,
                tuple(sorted(op.value for op in rule.operations)),
            )
            for rule in principal.acl_rules(CI_CATALOG)
        }
        assert _acl_set(spec["authorization"]["acls"]) == expected, principal.name


def test_user_password_secrets_hold_the_seed_derived_passwords(
    api: KubeApi, stack_seed: str
) -> None:
    secrets = _items(api, "v1", "secrets")
    for principal in PRINCIPALS:
        secret = secrets[f"starling-{principal.name}-password"]
        stored = base64.b64decode(secret["data"]["password"]).decode()
        # Recomputed here from the documented scheme (HMAC-SHA256 of the purpose label).
        label = f"starling/v1/kafka-user/{principal.name}".encode()
        assert stored == hmac.new(stack_seed.encode(), label, hashlib.sha256).hexdigest()


def test_identity_seed_is_derived_and_mounted_as_a_file(api: KubeApi, stack_seed: str) -> None:
    """The ci stack is a dev stack without an external issuer: the built-in identity service
    runs, its seed Secret holds the documented derivation, and the gateway trusts it."""
    secret = _items(api, "v1", "secrets")["starling-identity-seed"]
    stored = base64.b64decode(secret["data"]["seed"]).decode()
    label = b"starling/v1/identity/signing-seed"
    assert stored == hmac.new(stack_seed.encode(), label, hashlib.sha256).hexdigest()
    deployments = _items(api, "apps/v1", "deployments")
    identity = deployments["starling-services-identity"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in identity["volumes"]}
    assert volumes["identity-seed"]["secret"]["secretName"] == "starling-identity-seed"
    (container,) = identity["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["STARLING_IDENTITY_SEED_FILE"]["value"] == "/etc/starling/identity/seed"
    assert all("seed" not in str(e.get("valueFrom", "")) for e in env.values())
    (gateway,) = deployments["starling-services-gateway"]["spec"]["template"]["spec"]["containers"]
    gateway_env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert gateway_env["STARLING_GATEWAY_AUTH"] == "token"
    assert gateway_env["STARLING_GATEWAY_REVOCATION"] == "store"
    assert gateway_env["STARLING_GATEWAY_JWKS_URL"] == (
        "http://starling-services-identity.starling.svc:8081/.well-known/jwks.json"
    )


def test_services_deployments_and_network_policies(api: KubeApi) -> None:
    deployments = _items(api, "apps/v1", "deployments")
    by_service = {
        service: [d for name, d in deployments.items() if name.endswith(service)]
        for service in RUNNABLE_SERVICES
    }
    assert all(len(found) == 1 for found in by_service.values()), sorted(deployments)
    assert len(deployments) == len(RUNNABLE_SERVICES), sorted(deployments)
    policies = list(_items(api, "networking.k8s.io/v1", "networkpolicies").values())
    for service, (deployment,) in by_service.items():
        assert deployment["spec"]["replicas"] == 1, service
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert containers[0]["image"] == SERVICES_IMAGE, service
        # skipAwait reached the release (Helm did not wait for pods that never run).
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        covered = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).items() <= pod_labels.items()
        ]
        assert covered, f"no NetworkPolicy selects the {service} pods ({pod_labels})"
    # The store's own policy (Valkey accepts only our pods and Airflow's task pods, below).
    assert any(p["metadata"]["name"].startswith("starling-valkey") for p in policies)


def test_store_policy_admits_airflows_task_pods(api: KubeApi) -> None:
    """As the API server stored it: our pods, and in Airflow's namespace only the chart's
    scheduler, worker and triggerer pods (both selectors in one peer, so they AND)."""
    policy = _items(api, "networking.k8s.io/v1", "networkpolicies")["starling-valkey"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "starling"}}},
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "starling-airflow"}
            },
            "podSelector": {
                "matchLabels": {"tier": "airflow", "release": "starling-airflow"},
                "matchExpressions": [
                    {
                        "key": "component",
                        "operator": "In",
                        "values": ["scheduler", "worker", "triggerer"],
                    }
                ],
            },
        },
    ]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_store_statefulset_exists_without_waiting(api: KubeApi) -> None:
    stateful_sets = _items(api, "apps/v1", "statefulsets")
    store = stateful_sets["starling-valkey"]
    assert store["metadata"]["annotations"][SKIP_AWAIT_ANNOTATION] == "true"
    # No kubelet: the pod is never ready. This is what the ci stack configures around.
    assert store.get("status", {}).get("readyReplicas", 0) == 0


def _changes(log: StepLog) -> list[tuple[str, str, str]]:
    return [(op, kind, name) for op, kind, name, _ in log.changed()]


def test_second_run_changes_nothing(ci: CiStack) -> None:
    # Once proposed a CRD update every time (Strimzi's Kafka CRD has an empty `properties`
    # map the API server prunes); the program now applies the CRDs pruned the same way.
    result, log = ci.preview()
    assert _changes(log) == []
    assert set(result.change_summary) == {OpType.SAME}
    _, up_log = ci.up()
    assert _changes(up_log) == []


def test_second_preview_expects_no_changes(ci: CiStack) -> None:
    ci.preview(expect_no_changes=True)


def test_replicas_change_is_exactly_one_release_update(ci: CiStack, api: KubeApi) -> None:
    ci.set_config("starling:services.replicas", "2")
    _, log = ci.preview()
    assert _changes(log) == [("update", "kubernetes:helm.sh/v3:Release", "services-release")]
    (release_step,) = [step for step in log.changed() if step[2] == "services-release"]
    assert "values" in release_step[3]
    ci.up()
    deployments = _items(api, "apps/v1", "deployments")
    assert {d["spec"]["replicas"] for d in deployments.values()} == {2}
    ci.set_config("starling:services.replicas", "1")
    ci.up()
    deployments = _items(api, "apps/v1", "deployments")
    assert {d["spec"]["replicas"] for d in deployments.values()} == {1}


def test_destroy_leaves_nothing_behind(ci: CiStack, api: KubeApi) -> None:
    result = ci.destroy()
    assert result.summary.result == "succeeded"
    for namespace in OUR_NAMESPACES:
        wait_for(
            _absent(api, f"/api/v1/namespaces/{namespace}"),
            timeout=180,
            what=f"namespace {namespace} to be gone",
        )
    crds = api.list("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert [c["metadata"]["name"] for c in crds if "strimzi" in c["metadata"]["name"]] == []
    assert ci.outputs() == {}
