"""The resource graph of the dev and prod stacks: what exists, how it is wired, what it says."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from typing import Any

import jsonschema
import pytest
import yaml

from starling.access import PRINCIPALS, PrincipalKind
from starling.topics import CATALOG
from starling_infra import airflow as airflow_component
from starling_operators import settings as operator_settings
from tests.unit.infra.harness import REPO_ROOT, ProgramRun, run_program

pytestmark = pytest.mark.unit

STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
N_TOPICS = len(list(CATALOG.all_topics()))
N_SERVICE_PRINCIPALS = sum(p.kind is not PrincipalKind.DEV_TOOL for p in PRINCIPALS)
N_PRINCIPALS = len(PRINCIPALS)


def _count(run: ProgramRun) -> Counter[str]:
    return Counter(r.type.split(":")[-1] for r in run.resources)


def test_dev_resource_graph(dev_run: ProgramRun) -> None:
    assert _count(dev_run) == Counter(
        {
            "Namespaces": 1,
            "StrimziOperator": 1,
            "KafkaCluster": 1,
            "Store": 1,
            "Airflow": 1,
            "MetadataDatabase": 1,
            "Services": 1,
            "Identity": 1,
            "Namespace": 3,
            "Release": 3,
            # + the metadata database's CA and pg_hba.conf
            "ConfigMap": 3,
            # user passwords + store + database + database TLS + airflow keys + airflow UI
            # admin + airflow connections file + CA copy + the identity service's seed
            # + the store's TLS Secret and the internal CA certificate (store.py)
            "Secret": N_PRINCIPALS + 8 + 2,
            # + the metadata database's headless Service
            "Service": 4,
            "StatefulSet": 2,
            "NetworkPolicy": 2,
            "KafkaNodePool": 1,
            "Kafka": 1,
            "KafkaTopic": N_TOPICS,
            "KafkaUser": N_PRINCIPALS,
        }
    )


def test_prod_resource_graph(prod_run: ProgramRun) -> None:
    counts = _count(prod_run)
    assert counts["KafkaNodePool"] == 2
    assert counts["KafkaUser"] == N_SERVICE_PRINCIPALS  # no dev tools in production
    # As dev, less the identity seed: prod's example trusts an external OIDC provider.
    assert counts["Secret"] == N_SERVICE_PRINCIPALS + 7 + 2
    assert counts["Identity"] == 0
    assert counts["KafkaTopic"] == N_TOPICS
    assert counts["Release"] == 3


def test_every_child_belongs_to_a_component(stack_run: ProgramRun) -> None:
    components = {r.urn for r in stack_run.resources if not r.custom}
    for resource in stack_run.resources:
        if resource.custom:
            assert resource.parent in components, f"{resource.name} is not inside a component"
        else:
            assert resource.type.startswith("starling:"), resource.type


def test_child_names_derive_from_their_component(stack_run: ProgramRun) -> None:
    by_urn = {r.urn: r for r in stack_run.resources}
    for resource in stack_run.resources:
        parent = by_urn.get(resource.parent)
        if parent is not None:
            assert resource.name.startswith(parent.name + "-"), (parent.name, resource.name)


@pytest.mark.parametrize("kind", STRIMZI_KINDS)
def test_every_strimzi_resource_depends_on_the_operator(stack_run: ProgramRun, kind: str) -> None:
    operator = stack_run.named("strimzi-operator")
    resources = stack_run.of_kind(kind)
    assert resources
    for resource in resources:
        assert operator.urn in resource.dependencies, f"{kind} {resource.name}"


def test_crds_from_directory_without_operator() -> None:
    """The hook for an API-server-only cluster: CRDs applied by Pulumi, no operator."""
    run = run_program(
        "dev",
        overrides={
            "starling:strimzi.installOperator": False,
            "starling:strimzi.crdsFrom": "directory",
            "starling:kafka.waitForReady": False,
            "starling:airflow.enabled": False,
            "starling:services.enabled": False,
        },
    )
    (crds,) = run.of_type("kubernetes:yaml/v2:ConfigGroup")
    kinds = {obj["spec"]["names"]["kind"] for obj in crds.inputs["objs"]}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"} <= kinds
    # Empty `properties` maps are pruned as the API server would (no drift on re-runs).
    assert '"properties": {}' not in json.dumps(crds.inputs["objs"])
    assert not run.of_type("kubernetes:helm.sh/v3:Release")
    assert "strimzi" not in {r.inputs["metadata"]["name"] for r in run.of_kind("Namespace")}
    for kind in STRIMZI_KINDS:
        for resource in run.of_kind(kind):
            assert crds.urn in resource.dependencies
            # Nothing reconciles here, so nothing may wait for Ready.
            assert "pulumi.com/waitFor" not in (
                resource.inputs["metadata"].get("annotations") or {}
            )


def test_crds_from_directory_with_operator_skips_the_charts_crds() -> None:
    run = run_program("dev", overrides={"starling:strimzi.crdsFrom": "directory"})
    release = run.named("strimzi-operator")
    (crds,) = run.of_type("kubernetes:yaml/v2:ConfigGroup")
    assert release.inputs["skipCrds"] is True
    assert crds.urn in release.dependencies


def test_namespaces_enforce_restricted(stack_run: ProgramRun) -> None:
    names = set()
    for namespace in stack_run.of_kind("Namespace"):
        labels = namespace.inputs["metadata"]["labels"]
        names.add(namespace.inputs["metadata"]["name"])
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert names == {"starling", "starling-airflow", "strimzi"}


def test_every_object_carries_the_standard_labels(stack_run: ProgramRun) -> None:
    for resource in stack_run.kubernetes_objects():
        labels = resource.inputs["metadata"].get("labels") or {}
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{resource.kind} {resource.name} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "starling"
        assert labels["app.kubernetes.io/managed-by"] == "pulumi"


def test_object_names_are_valid_kubernetes_names(stack_run: ProgramRun) -> None:
    for resource in stack_run.kubernetes_objects():
        name = resource.inputs["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name


def test_strimzi_operator_release(stack_run: ProgramRun) -> None:
    release = stack_run.named("strimzi-operator").inputs
    assert release["chart"] == "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    assert release["version"] == "1.2.0"
    assert release["namespace"] == "strimzi"
    assert release["values"]["watchNamespaces"] == ["starling"]
    assert {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"} in release[
        "values"
    ]["extraEnvs"]


def _kafka(run: ProgramRun) -> dict[str, Any]:
    (kafka,) = run.of_kind("Kafka")
    assert kafka.inputs["metadata"]["name"] == "starling"
    return kafka.inputs


def test_kafka_listens_only_with_tls_and_scram(stack_run: ProgramRun) -> None:
    spec = _kafka(stack_run)["spec"]["kafka"]
    assert spec["version"] == "4.3.1"
    assert spec["metadataVersion"] == "4.3-IV0"
    (listener,) = spec["listeners"]
    assert listener["name"] == "tls"
    assert listener["port"] == 9093
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert listener["networkPolicyPeers"][0] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "starling"}}
    }
    assert spec["authorization"] == {"type": "simple", "superUsers": []}


def test_kafka_listener_admits_our_pods_and_airflows_task_pods_only(
    stack_run: ProgramRun,
) -> None:
    (listener,) = _kafka(stack_run)["spec"]["kafka"]["listeners"]
    # Strimzi turns the peers into the ingress rule of a NetworkPolicy in Kafka's namespace.
    policy = {
        "metadata": {"namespace": "starling"},
        "spec": {"ingress": [{"from": listener["networkPolicyPeers"]}]},
    }
    service = {"app.kubernetes.io/part-of": "starling", "app.kubernetes.io/name": "gateway"}
    assert _admitted(policy, "starling", service)
    assert not _admitted(policy, "default", service)
    for component in ("scheduler", "worker", "triggerer"):
        pod = _airflow_chart_pod(component, stack_run)
        assert _admitted(policy, "starling-airflow", pod), component
        assert not _admitted(policy, "default", pod), component
    for component in ("api-server", "dag-processor", "run-airflow-migrations", "create-user-job"):
        assert not _admitted(policy, "starling-airflow", _airflow_chart_pod(component, stack_run))
    database = stack_run.named("airflow-db-statefulset").inputs["spec"]["template"]
    assert not _admitted(policy, "starling-airflow", database["metadata"]["labels"])


def test_kafka_metrics_come_from_our_config_map(stack_run: ProgramRun) -> None:
    metrics = _kafka(stack_run)["spec"]["kafka"]["metricsConfig"]
    assert metrics["type"] == "jmxPrometheusExporter"
    ref = metrics["valueFrom"]["configMapKeyRef"]
    (config_map,) = [
        c for c in stack_run.of_kind("ConfigMap") if c.inputs["metadata"]["name"] == ref["name"]
    ]
    assert config_map.inputs["metadata"]["namespace"] == "starling"
    rules = json.loads(config_map.inputs["data"][ref["key"]])["rules"]
    assert rules and all({"pattern", "name", "type"} <= set(rule) for rule in rules)


def test_kafka_has_both_entity_operators(stack_run: ProgramRun) -> None:
    entity = _kafka(stack_run)["spec"]["entityOperator"]
    assert set(entity) == {"topicOperator", "userOperator"}


@pytest.mark.parametrize(
    ("stack", "rf", "min_isr"), [("dev", 1, 1), ("prod", 3, 2)], ids=["dev", "prod"]
)
def test_broker_config_follows_the_cluster_size(
    dev_run: ProgramRun, prod_run: ProgramRun, stack: str, rf: int, min_isr: int
) -> None:
    config = _kafka(dev_run if stack == "dev" else prod_run)["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == rf
    assert config["offsets.topic.replication.factor"] == rf
    assert config["transaction.state.log.replication.factor"] == rf
    assert config["min.insync.replicas"] == min_isr
    assert config["transaction.state.log.min.isr"] == min_isr
    assert config["unclean.leader.election.enable"] is False
    assert config["auto.create.topics.enable"] is False


def test_broker_config_avoids_keys_strimzi_forbids(stack_run: ProgramRun) -> None:
    # KafkaClusterSpec.FORBIDDEN_PREFIXES in Strimzi 1.2 (the operator rejects these).
    forbidden = (
        "listeners", "advertised.", "broker.", "listener.", "host.name", "port",
        "inter.broker.listener.name", "sasl.", "ssl.", "security.", "password.", "log.dir",
        "authorizer.", "super.user", "node.id", "process.roles", "controller.",
        "metadata.log.dir",
    )  # fmt: skip
    for key in _kafka(stack_run)["spec"]["kafka"]["config"]:
        assert not key.startswith(forbidden), key


def test_dev_runs_one_dual_role_pool(dev_run: ProgramRun) -> None:
    (pool,) = dev_run.of_kind("KafkaNodePool")
    spec = pool.inputs["spec"]
    assert pool.inputs["metadata"]["name"] == "dual-role"
    assert pool.inputs["metadata"]["labels"]["strimzi.io/cluster"] == "starling"
    assert spec["replicas"] == 1
    assert sorted(spec["roles"]) == ["broker", "controller"]
    (volume,) = spec["storage"]["volumes"]
    assert volume["type"] == "ephemeral"
    assert volume["kraftMetadata"] == "shared"


def test_prod_separates_controllers_and_brokers(prod_run: ProgramRun) -> None:
    pools = {
        p.inputs["metadata"]["name"]: p.inputs["spec"] for p in prod_run.of_kind("KafkaNodePool")
    }
    assert set(pools) == {"controller", "broker"}
    assert pools["controller"]["roles"] == ["controller"]
    assert pools["broker"]["roles"] == ["broker"]
    for spec in pools.values():
        assert spec["replicas"] == 3
        (volume,) = spec["storage"]["volumes"]
        assert volume["type"] == "persistent-claim"
        assert volume["deleteClaim"] is False
    rack = _kafka(prod_run)["spec"]["kafka"]["rack"]
    assert rack["topologyKey"] == "topology.kubernetes.io/zone"


def test_broker_resources_sit_on_the_node_pools(stack_run: ProgramRun) -> None:
    assert "resources" not in _kafka(stack_run)["spec"]["kafka"]
    for pool in stack_run.of_kind("KafkaNodePool"):
        resources = pool.inputs["spec"]["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]


def test_topics_are_exactly_the_catalog(stack_run: ProgramRun) -> None:
    brokers = 1 if stack_run.stack == "dev" else 3
    expected = {spec.name: spec for spec in CATALOG.for_cluster(brokers).all_topics()}
    topics = {t.inputs["spec"]["topicName"]: t.inputs for t in stack_run.of_kind("KafkaTopic")}
    assert set(topics) == set(expected)
    for name, topic in topics.items():
        spec = expected[name]
        assert topic["metadata"]["name"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "starling"
        assert topic["spec"] == {
            "topicName": name,
            "partitions": spec.partitions,
            "replicas": spec.replicas,
            "config": spec.kafka_config(),
        }


def test_users_get_their_derived_password_from_our_secret(stack_run: ProgramRun) -> None:
    secrets = {s.inputs["metadata"]["name"]: s for s in stack_run.of_kind("Secret")}
    expected = {
        f"starling-{p.name}"
        for p in PRINCIPALS
        if p.kind is not PrincipalKind.DEV_TOOL or stack_run.stack == "dev"
    }
    users = {u.inputs["metadata"]["name"]: u for u in stack_run.of_kind("KafkaUser")}
    assert set(users) == expected
    for name, user in users.items():
        authentication = user.inputs["spec"]["authentication"]
        ref = authentication["password"]["valueFrom"]["secretKeyRef"]
        assert authentication["type"] == "scram-sha-512"
        assert ref == {"name": f"{name}-password", "key": "password"}
        assert ref["name"] in secrets
        assert secrets[ref["name"]].urn in user.dependencies
        assert user.inputs["metadata"]["labels"]["strimzi.io/cluster"] == "starling"


def test_pulumi_waits_for_strimzi_to_report_ready(stack_run: ProgramRun) -> None:
    for kind in ("Kafka", "KafkaTopic", "KafkaUser"):
        for resource in stack_run.of_kind(kind):
            annotations = resource.inputs["metadata"]["annotations"]
            assert annotations["pulumi.com/waitFor"] == "condition=Ready"


def test_store(stack_run: ProgramRun) -> None:
    (statefulset,) = [s for s in stack_run.of_kind("StatefulSet") if s.name == "store-statefulset"]
    spec = statefulset.inputs["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    assert re.match(r"^valkey/valkey:\d+\.\d+\.\d+$", container["image"])
    assert container["command"] == ["valkey-server", "/etc/valkey/valkey.conf"]
    assert "ping" in " ".join(container["livenessProbe"]["exec"]["command"])
    assert container["resources"]["limits"]["memory"]
    secret = stack_run.named("store-secret").inputs
    assert secret["stringData"]["valkey.conf"].count("requirepass ") == 1
    assert "stringData" in stack_run.named("store-secret").secret_paths
    claims = spec.get("volumeClaimTemplates")
    if stack_run.stack == "prod":
        assert claims[0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert "appendonly yes" in secret["stringData"]["valkey.conf"]
    else:
        assert not claims


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a label set."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for requirement in selector.get("matchExpressions", []):
        key, operator = requirement["key"], requirement["operator"]
        values = requirement.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _admitted(policy: dict[str, Any], namespace: str, pod_labels: dict[str, str]) -> bool:
    """Whether an ingress rule of `policy` admits a pod in `namespace` with `pod_labels`:
    a peer without a namespaceSelector means the policy's own namespace; both selectors in
    one peer must match together."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                in_namespace = _selects(peer["namespaceSelector"], namespace_labels)
            else:
                in_namespace = namespace == policy["metadata"]["namespace"]
            if in_namespace and _selects(peer.get("podSelector", {}), pod_labels):
                return True
    return False


def _airflow_chart_pod(component: str, run: ProgramRun) -> dict[str, str]:
    """The labels the official chart renders on a pod of `component` (its Deployment,
    StatefulSet and pod-template templates: tier, component, release, plus `labels`)."""
    values = run.named("airflow-release").inputs["values"]
    return {"tier": "airflow", "component": component, "release": "starling-airflow"} | values[
        "labels"
    ]


def test_store_admits_only_starling_pods_and_airflows_task_pods(stack_run: ProgramRun) -> None:
    policy = stack_run.named("store-network-policy").inputs
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


def test_store_policy_admits_the_pods_that_run_tasks_and_no_others(
    stack_run: ProgramRun,
) -> None:
    policy = stack_run.named("store-network-policy").inputs
    service = {"app.kubernetes.io/part-of": "starling", "app.kubernetes.io/name": "ingestion"}
    assert _admitted(policy, "starling", service)
    # LocalExecutor runs tasks in the scheduler, Celery and Kubernetes executors in workers.
    for component in ("scheduler", "worker", "triggerer"):
        pod = _airflow_chart_pod(component, stack_run)
        assert _admitted(policy, "starling-airflow", pod), component
        assert not _admitted(policy, "default", pod), component
    for component in ("api-server", "dag-processor", "run-airflow-migrations", "create-user-job"):
        pod = _airflow_chart_pod(component, stack_run)
        assert not _admitted(policy, "starling-airflow", pod), component
    # Airflow's metadata database carries our labels, part-of included, but lives elsewhere.
    database = stack_run.named("airflow-db-statefulset").inputs["spec"]["template"]
    assert not _admitted(policy, "starling-airflow", database["metadata"]["labels"])
    assert not _admitted(policy, "default", service)


def test_airflow_release(stack_run: ProgramRun) -> None:
    release = stack_run.named("airflow-release").inputs
    assert release["chart"] == "airflow"
    assert release["version"] == "1.22.0"
    assert release["repositoryOpts"] == {"repo": "https://airflow.apache.org"}
    assert release["namespace"] == "starling-airflow"
    values = release["values"]
    assert values["airflowVersion"] == "3.3.2"
    assert values["executor"] == (
        "LocalExecutor" if stack_run.stack == "dev" else "KubernetesExecutor"
    )
    assert values["postgresql"] == {"enabled": False}
    assert values["migrateDatabaseJob"]["useHelmHooks"] is False
    assert values["createUserJob"]["useHelmHooks"] is False
    assert values["data"]["metadataSecretName"] == "starling-airflow-db"
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key] == "starling-airflow-keys"
    # Connections come from a file (LocalFilesystemBackend), not from env secrets.
    assert values["secret"] == []
    assert values["config"]["secrets"]["backend"] == (
        "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    )
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["securityContexts"]["pod"]["runAsNonRoot"] is True


def test_airflow_values_carry_no_secret(stack_run: ProgramRun) -> None:
    values = json.dumps(stack_run.named("airflow-release").inputs["values"])
    for secret in stack_run.of_kind("Secret"):
        for value in (secret.inputs.get("stringData") or {}).values():
            assert value not in values


def test_every_airflow_secret_volume_exists_before_the_release(stack_run: ProgramRun) -> None:
    """Each Secret volume of the chart's `volumes` names a Secret we create in Airflow's
    namespace, with every key it mounts, and the release waits for it (a missing key would
    keep every Airflow pod from starting)."""
    release = stack_run.named("airflow-release")
    secrets = {
        s.inputs["metadata"]["name"]: s
        for s in stack_run.of_kind("Secret")
        if s.inputs["metadata"]["namespace"] == "starling-airflow"
    }
    volumes = [v["secret"] for v in release.inputs["values"]["volumes"] if "secret" in v]
    assert len(volumes) >= 4
    for volume in volumes:
        secret = secrets[volume["secretName"]]
        keys = set(secret.inputs.get("stringData") or {}) | set(secret.inputs.get("data") or {})
        for item in volume.get("items", []):
            assert item["key"] in keys, (volume["secretName"], item["key"])
        database = stack_run.named("airflow-db-statefulset")
        assert secret.urn in release.dependencies or secret.parent == database.parent


def test_connection_names_match_the_operators() -> None:
    """The infra names the env variables itself (it does not depend on the operators
    package); they must be the ones Airflow derives from the operators' connection ids."""
    for conn_id, env in (
        (operator_settings.KAFKA_CONN_ID, airflow_component.KAFKA_CONNECTION_ENV),
        (operator_settings.STORE_CONN_ID, airflow_component.STORE_CONNECTION_ENV),
    ):
        assert env == f"AIRFLOW_CONN_{conn_id.upper()}"


def _connections(run: ProgramRun) -> dict[str, Any]:
    secret = run.named("airflow-connections")
    assert secret.inputs["metadata"]["name"] == "starling-airflow-connections"
    assert secret.inputs["metadata"]["namespace"] == "starling-airflow"
    assert secret.secret_paths == {"stringData"}
    assert set(secret.inputs["stringData"]) == {"connections.json"}
    connections: dict[str, Any] = json.loads(secret.inputs["stringData"]["connections.json"])
    assert set(connections) == {"kafka_default", "starling_store"}
    return connections


def test_airflow_store_connection(stack_run: ProgramRun) -> None:
    uri = _connections(stack_run)["starling_store"]
    # Parsed the way Airflow parses a connection URI (urlsplit, then unquote).
    parts = urllib.parse.urlsplit(uri)
    store_password = stack_run.named("store-secret").inputs["stringData"]["password"]
    service = stack_run.named("store-service").inputs
    assert parts.scheme == "redis"
    assert parts.username == ""
    assert urllib.parse.unquote(parts.password or "") == store_password
    expected_host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert parts.hostname == expected_host == "starling-valkey.starling.svc"
    assert parts.port == service["spec"]["ports"][0]["port"] == 6379
    assert parts.path == "/0"
    # The store speaks TLS only: verified against the internal CA Airflow's pods mount.
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "ssl": "true",
        "ssl_ca_certs": "/var/run/secrets/starling/internal-ca/ca.crt",
    }
    assert store_password not in json.dumps(stack_run.named("airflow-release").inputs["values"])


def test_store_connection_quotes_the_password() -> None:
    password = "p@ss:w/rd?#%"
    uri = airflow_component.store_connection(password, "valkey.example.svc", 6380)
    parts = urllib.parse.urlsplit(uri)
    assert urllib.parse.unquote(parts.password or "") == password
    assert (parts.hostname, parts.port, parts.path) == ("valkey.example.svc", 6380, "/0")


def test_airflow_git_sync() -> None:
    run = run_program(
        "dev",
        overrides={
            "starling:airflow.dags": "gitSync",
            "starling:airflow.gitSyncRepo": "https://example.org/dags.git",
        },
    )
    git_sync = run.named("airflow-release").inputs["values"]["dags"]["gitSync"]
    assert git_sync["enabled"] is True
    assert git_sync["repo"] == "https://example.org/dags.git"
    assert git_sync["subPath"] == "dags"


def test_airflow_kafka_connection(stack_run: ProgramRun) -> None:
    connection = _connections(stack_run)["kafka_default"]
    extra = connection["extra_dejson"]
    password = stack_run.named("kafka-user-airflow-password").inputs["stringData"]["password"]
    assert connection["conn_type"] == "kafka"
    assert extra["bootstrap.servers"] == "starling-kafka-bootstrap.starling.svc:9093"
    assert extra["security.protocol"] == "SASL_SSL"
    assert extra["sasl.mechanism"] == "SCRAM-SHA-512"
    assert extra["sasl.username"] == "starling-airflow"
    assert extra["sasl.password"] == password
    assert extra["group.id"].startswith("starling-airflow")
    # The login watcher's shared-stream trigger refuses to start unless this is false.
    assert extra["enable.auto.commit"] is False
    # A new watcher group starts at new logins, not at the topic's whole retention.
    assert extra["auto.offset.reset"] == "latest"
    mount = stack_run.named("airflow-release").inputs["values"]["volumeMounts"][0]["mountPath"]
    assert extra["ssl.ca.location"] == f"{mount}/ca.crt"


def test_airflow_trusts_the_cluster_ca_copied_after_kafka_is_ready(stack_run: ProgramRun) -> None:
    assert (
        "kubernetes:core/v1:Secret",
        "airflow-strimzi-cluster-ca",
        "starling/starling-cluster-ca-cert",
    ) in stack_run.reads
    copy = stack_run.named("airflow-kafka-ca")
    assert copy.inputs["metadata"]["name"] == "starling-kafka-cluster-ca"
    assert copy.inputs["metadata"]["namespace"] == "starling-airflow"
    assert copy.inputs["data"]["ca.crt"]
    assert copy.urn in stack_run.named("airflow-release").dependencies


def test_services_release_values_follow_the_contract(stack_run: ProgramRun) -> None:
    release = stack_run.named("services-release")
    values = release.inputs["values"]
    assert release.inputs["chart"].endswith("charts/starling-services")
    assert release.inputs["namespace"] == "starling"
    assert set(values) == {
        "image", "kafka", "store", "services", "networkPolicy", "podDisruptionBudget",
        "metrics", "gateway", "identity",
    }  # fmt: skip
    assert values["image"] == {
        "repository": "starling/services",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert values["kafka"] == {
        "bootstrapServers": "starling-kafka-bootstrap.starling.svc:9093",
        "securityProtocol": "SASL_SSL",
        "saslMechanism": "SCRAM-SHA-512",
        "caSecret": {"name": "starling-cluster-ca-cert", "key": "ca.crt"},
    }
    assert values["store"] == {
        "host": "starling-valkey.starling.svc",
        "port": 6379,
        "passwordSecret": {"name": "starling-valkey", "key": "password"},
        "tls": {"enabled": True, "caSecret": {"name": "starling-internal-ca", "key": "ca.crt"}},
    }
    assert set(values["services"]) == {
        "ingestion", "trends", "timelines", "notifier", "gateway", "identity",
    }  # fmt: skip
    # The built-in identity service runs in dev; prod's example uses an external issuer.
    assert values["services"]["identity"]["enabled"] is (stack_run.stack == "dev")
    users = {u.inputs["metadata"]["name"] for u in stack_run.of_kind("KafkaUser")}
    for name, service in values["services"].items():
        assert service["kafkaUser"] == f"starling-{name}"
        assert service["kafkaUser"] in users
        assert set(service) == {"enabled", "replicas", "kafkaUser", "resources", "autoscaling"}
        assert set(service["autoscaling"]) == {
            "enabled", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage",
        }  # fmt: skip
    assert values["metrics"] == {"port": 9100}
    assert values["gateway"] == {
        "service": {"type": "ClusterIP", "port": 8080},
        "trustUserHeader": {"enabled": False, "proxies": [], "namespaces": []},
    }
    # The services start only once their users (and the Secrets Strimzi writes) exist.
    user_urns = {u.urn for u in stack_run.of_kind("KafkaUser")}
    assert user_urns <= set(release.dependencies)


def test_prod_services_scale_and_keep_a_budget(prod_run: ProgramRun) -> None:
    values = prod_run.named("services-release").inputs["values"]
    assert values["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    for service in values["services"].values():
        assert service["replicas"] == 2
        assert service["autoscaling"]["enabled"] is True
        assert service["autoscaling"]["maxReplicas"] == 6


def test_exports(stack_run: ProgramRun) -> None:
    exports = stack_run.exports
    assert exports["kafkaBootstrapServers"] == "starling-kafka-bootstrap.starling.svc:9093"
    assert exports["airflowUrl"] == "http://starling-airflow-api-server.starling-airflow.svc:8080"
    assert exports["airflowPortForward"].startswith("kubectl -n starling-airflow port-forward")
    # The gateway is deployed (it is runnable), so its in-cluster URL is exported.
    assert exports["gatewayUrl"] == "http://starling-services-gateway.starling.svc:8080"
    checks = exports["checks"]
    assert "kubectl -n starling get kafka,kafkanodepool,kafkatopic,kafkauser" in checks
    assert "kubectl -n starling wait kafka/starling --for=condition=Ready --timeout=600s" in checks


def _merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge: maps merge key by key, everything else is replaced."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = _merged(defaults[key], value)
        else:
            merged[key] = value
    return merged


def test_services_values_satisfy_the_charts_schema(stack_run: ProgramRun) -> None:
    """The chart's values.schema.json is the contract; Helm checks the merged values."""
    chart = REPO_ROOT / "charts" / "starling-services"
    if not (chart / "values.schema.json").is_file():
        pytest.skip("charts/starling-services is not in this checkout yet")
    schema = json.loads((chart / "values.schema.json").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    values = _merged(defaults, stack_run.named("services-release").inputs["values"])
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(values)]
    assert not problems, "\n".join(problems)
