"""What `helm template` renders: objects per service, the values contract wired into
them, secure defaults, optional features off by default, names and labels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.charts.conftest import (
    CHART_DIR,
    NAMESPACE,
    SERVICES,
    Manifest,
    Render,
    by_kind,
    run_helm,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

ALL_FEATURES = CHART_DIR / "ci" / "values-all-features.yaml"
GATEWAY_ONLY = CHART_DIR / "ci" / "values-gateway-only.yaml"
PULUMI_CONTRACT = CHART_DIR / "ci" / "values-pulumi-contract.yaml"
HEADER_AUTH = CHART_DIR / "ci" / "values-header-auth.yaml"
# The selector labels of the Pulumi program's Valkey (starling_infra.store), which the
# chart's default store peer must match: test_store_default_matches_the_programs_valkey.
STORE_SELECTOR = {
    "app.kubernetes.io/name": "starling-valkey",
    "app.kubernetes.io/instance": "starling",
}

LABEL_KEYS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(deployment: Manifest) -> dict[str, Any]:
    return {
        entry["name"]: entry.get("value", entry.get("valueFrom"))
        for entry in container(deployment)["env"]
    }


# --- what exists ---------------------------------------------------------------------


def test_defaults_render_the_core_objects_of_every_service(render: Render) -> None:
    documents = render()
    for kind in ("Deployment", "ServiceAccount", "NetworkPolicy"):
        assert set(by_kind(documents, kind)) == set(SERVICES), kind
    services = by_kind(documents, "Service")
    assert set(services) == {f"{name}-metrics" for name in SERVICES} | {"gateway", "identity"}


def test_hpa_is_off_by_default(render: Render) -> None:
    assert by_kind(render(), "HorizontalPodAutoscaler") == {}


def test_pdb_is_not_rendered_for_single_replica_services_by_default(render: Render) -> None:
    # minAvailable 1 on one replica would make every node drain hang.
    assert by_kind(render(), "PodDisruptionBudget") == {}


def test_networkpolicy_is_on_by_default(render: Render) -> None:
    assert set(by_kind(render(), "NetworkPolicy")) == set(SERVICES)


def test_gateway_is_not_exposed_outside_the_cluster_by_default(render: Render) -> None:
    gateway = by_kind(render(), "Service")["gateway"]
    assert gateway["spec"]["type"] == "ClusterIP"


def test_networkpolicy_can_be_switched_off(render: Render) -> None:
    documents = render(set_values={"networkPolicy.enabled": "false"})
    assert by_kind(documents, "NetworkPolicy") == {}


def test_disabled_services_render_nothing(render: Render) -> None:
    documents = render(values_files=[GATEWAY_ONLY])
    components = {doc["metadata"]["labels"]["app.kubernetes.io/component"] for doc in documents}
    assert components == {"gateway"}
    assert by_kind(documents, "Deployment")["gateway"]["spec"]["replicas"] == 2


def test_every_service_of_the_pulumi_contract_renders(render: Render) -> None:
    documents = render(values_files=[PULUMI_CONTRACT])
    assert set(by_kind(documents, "Deployment")) == set(SERVICES)
    # The gateway runs 2 replicas there, so it (alone) gets a disruption budget.
    assert set(by_kind(documents, "PodDisruptionBudget")) == {"gateway"}


# --- the Deployment honours the values contract -----------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_the_service_with_its_kafka_identity(render: Render, service: str) -> None:
    deployment = by_kind(render(), "Deployment")[service]
    main = container(deployment)
    assert main["image"] == "starling-services:0.1.0"
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["command"] == ["starling", "run", service]
    env = env_of(deployment)
    assert env["STARLING_SERVICE"] == service
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "starling-kafka-bootstrap:9093"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == f"starling-{service}"
    # Passwords are files (tests/unit/charts/test_chart_secrets.py checks the mounts).
    assert env["KAFKA_SASL_PASSWORD_FILE"] == "/var/run/secrets/starling/kafka-user/password"
    assert "KAFKA_SASL_PASSWORD" not in env and "STORE_PASSWORD" not in env
    assert env["STORE_HOST"] == "starling-store"
    assert env["STORE_PORT"] == "6379"
    assert env["STORE_PASSWORD_FILE"] == "/var/run/secrets/starling/store/password"
    assert env["METRICS_PORT"] == "9100"


def test_kafka_ca_is_mounted_where_the_env_points(render: Render) -> None:
    deployment = by_kind(render(values_files=[ALL_FEATURES]), "Deployment")["trends"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["kafka-ca"]["secret"] == {
        "secretName": "starling-cluster-ca-cert",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    mounts = {mount["name"]: mount for mount in container(deployment)["volumeMounts"]}
    assert mounts["kafka-ca"]["readOnly"] is True
    location = env_of(deployment)["KAFKA_SSL_CA_LOCATION"]
    assert location == f"{mounts['kafka-ca']['mountPath']}/ca.crt"


def test_ca_secret_key_is_taken_from_values(render: Render) -> None:
    documents = render(
        set_values={"kafka.caSecret.name": "events-ca", "kafka.caSecret.key": "tls.crt"}
    )
    pod = by_kind(documents, "Deployment")["ingestion"]["spec"]["template"]["spec"]
    secret = next(volume["secret"] for volume in pod["volumes"] if volume["name"] == "kafka-ca")
    assert secret == {"secretName": "events-ca", "items": [{"key": "tls.crt", "path": "ca.crt"}]}


@pytest.mark.parametrize("service", SERVICES)
def test_probes_use_the_metrics_port(render: Render, service: str) -> None:
    main = container(by_kind(render(), "Deployment")[service])
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports["metrics"] == 9100
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["startupProbe"]["httpGet"]["port"] == "metrics"


def test_metrics_port_is_configurable_everywhere(render: Render) -> None:
    documents = render(set_values={"metrics.port": "9200"})
    deployment = by_kind(documents, "Deployment")["timelines"]
    assert env_of(deployment)["METRICS_PORT"] == "9200"
    assert container(deployment)["ports"][0]["containerPort"] == 9200
    assert by_kind(documents, "Service")["timelines-metrics"]["spec"]["ports"][0]["port"] == 9200
    ingress = by_kind(documents, "NetworkPolicy")["timelines"]["spec"]["ingress"]
    assert ingress[0]["ports"] == [{"port": 9200, "protocol": "TCP"}]


@pytest.mark.parametrize("service", SERVICES)
def test_resources_come_from_values(render: Render, service: str) -> None:
    main = container(by_kind(render(), "Deployment")[service])
    expected = (
        # Argon2id holds 64 MiB per hash in flight.
        {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
        if service == "identity"
        else {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        }
    )
    assert main["resources"] == expected


def test_only_the_gateway_and_identity_serve_http(render: Render) -> None:
    deployments = by_kind(render(), "Deployment")
    for service in SERVICES:
        main = container(deployments[service])
        has_http = any(port["name"] == "http" for port in main["ports"])
        assert has_http == (service in ("gateway", "identity")), service
    gateway = container(deployments["gateway"])
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in gateway["ports"]
    assert env_of(deployments["gateway"])["HTTP_PORT"] == "8080"
    http_service = by_kind(render(), "Service")["gateway"]
    assert http_service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_metrics_services_stay_inside_the_cluster(render: Render) -> None:
    services = by_kind(render(values_files=[ALL_FEATURES]), "Service")
    assert services["gateway"]["spec"]["type"] == "LoadBalancer"
    for name in SERVICES:
        assert services[f"{name}-metrics"]["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("service", SERVICES)
def test_service_account_token_is_never_mounted(render: Render, service: str) -> None:
    documents = render()
    account = by_kind(documents, "ServiceAccount")[service]
    assert account["automountServiceAccountToken"] is False
    pod = by_kind(documents, "Deployment")[service]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False


def test_readonly_root_filesystem_has_a_writable_tmp(render: Render) -> None:
    deployment = by_kind(render(), "Deployment")["notifier"]
    main = container(deployment)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


# --- HPA and PDB ---------------------------------------------------------------------------


def test_hpa_takes_over_the_replica_count(render: Render) -> None:
    documents = render(values_files=[ALL_FEATURES])
    hpas = by_kind(documents, "HorizontalPodAutoscaler")
    assert set(hpas) == {"ingestion", "gateway"}
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        assert ("replicas" in deployments[service]["spec"]) == (service not in hpas), service
    gateway = hpas["gateway"]
    assert gateway["apiVersion"] == "autoscaling/v2"
    assert gateway["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployments["gateway"]["metadata"]["name"],
    }
    assert (gateway["spec"]["minReplicas"], gateway["spec"]["maxReplicas"]) == (3, 10)
    target = gateway["spec"]["metrics"][0]["resource"]
    assert target == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}


def test_pdb_rendered_where_a_pod_can_be_spared(render: Render) -> None:
    documents = render(values_files=[ALL_FEATURES])
    budgets = by_kind(documents, "PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    deployment = by_kind(documents, "Deployment")["trends"]
    budget = budgets["trends"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_pdb_follows_the_hpa_floor_not_replicas(render: Render) -> None:
    # replicas 3 is irrelevant once the HPA may scale down to 1.
    documents = render(
        set_values={
            "services.trends.replicas": "3",
            "services.trends.autoscaling.enabled": "true",
            "services.trends.autoscaling.minReplicas": "1",
        }
    )
    assert "trends" not in by_kind(documents, "PodDisruptionBudget")


def test_pdb_respects_its_switch(render: Render) -> None:
    documents = render(
        values_files=[ALL_FEATURES], set_values={"podDisruptionBudget.enabled": "false"}
    )
    assert by_kind(documents, "PodDisruptionBudget") == {}


def test_pdb_needs_more_replicas_than_min_available(render: Render) -> None:
    documents = render(
        set_values={"services.timelines.replicas": "2", "podDisruptionBudget.minAvailable": "2"}
    )
    assert "timelines" not in by_kind(documents, "PodDisruptionBudget")


# --- NetworkPolicy -----------------------------------------------------------------------


def policy_of(documents: list[Manifest], service: str) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(documents, "NetworkPolicy")[service]["spec"]
    return spec


def test_networkpolicy_denies_by_default_in_both_directions(render: Render) -> None:
    documents = render()
    for service in SERVICES:
        spec = policy_of(documents, service)
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        selector = by_kind(documents, "Deployment")[service]["spec"]["selector"]
        assert spec["podSelector"] == selector


def test_metrics_ingress_only_from_namespace_and_monitoring(render: Render) -> None:
    ingress = policy_of(render(), "trends")["ingress"]
    assert ingress == [
        {
            "from": [
                {"podSelector": {}},
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                },
            ],
            "ports": [{"port": 9100, "protocol": "TCP"}],
        }
    ]


def test_http_ports_admit_the_namespace_and_the_ingress_controller_only(render: Render) -> None:
    documents = render()
    for service, port in (("gateway", 8080), ("identity", 8081)):
        assert policy_of(documents, service)["ingress"][1] == {
            "ports": [{"port": port, "protocol": "TCP"}],
            "from": [
                {"podSelector": {}},
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                },
            ],
        }, service


def test_exposed_http_ports_admit_the_configured_cidrs_only(render: Render) -> None:
    # Behind a LoadBalancer the sources are client addresses, which no pod selector matches.
    exposed = policy_of(render(values_files=[ALL_FEATURES]), "gateway")["ingress"][1]
    assert exposed == {
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "from": [
            {"podSelector": {}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
            {"ipBlock": {"cidr": "198.51.100.0/24"}},
            {"ipBlock": {"cidr": "2001:db8::/32"}},
        ],
    }


def test_an_exposed_http_port_without_cidrs_fails_naming_the_key(helm: Path) -> None:
    result = run_helm(
        helm, "template", "starling", str(CHART_DIR), "--set", "gateway.service.type=LoadBalancer"
    )
    assert result.returncode != 0
    assert "networkPolicy.http.cidrs: gateway.service.type is LoadBalancer" in result.stderr


def test_no_http_port_admits_every_namespace_or_address(render: Render) -> None:
    for values in ([], [ALL_FEATURES], [PULUMI_CONTRACT], [HEADER_AUTH]):
        documents = render(values_files=values)
        for service in ("gateway", "identity"):
            if service not in by_kind(documents, "NetworkPolicy"):
                continue
            for rule in policy_of(documents, service)["ingress"]:
                assert "from" in rule, (service, values)
                for peer in rule["from"]:
                    assert peer.get("namespaceSelector", {"x": 1}) != {}, (service, values)
                    assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0")


def test_egress_reaches_strimzi_brokers_derived_from_bootstrap(render: Render) -> None:
    egress = policy_of(render(values_files=[PULUMI_CONTRACT]), "ingestion")["egress"]
    assert egress[0] == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "starling"}},
                "podSelector": {
                    "matchLabels": {
                        "strimzi.io/cluster": "starling",
                        "strimzi.io/kind": "Kafka",
                        "strimzi.io/broker-role": "true",
                    }
                },
            }
        ],
        "ports": [{"port": 9093, "protocol": "TCP"}],
    }


def test_egress_with_explicit_peers(render: Render) -> None:
    egress = policy_of(render(values_files=[ALL_FEATURES]), "timelines")["egress"]
    kafka, store, dns = egress
    assert kafka["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kafka"
    }
    assert store == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "valkey",
                        "app.kubernetes.io/instance": "starling-store",
                    }
                },
            }
        ],
        "ports": [{"port": 6379, "protocol": "TCP"}],
    }
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def test_every_distinct_bootstrap_port_is_allowed(render: Render) -> None:
    documents = render(
        set_values={
            # helm --set needs the comma escaped, or it starts a new key.
            "kafka.bootstrapServers": (
                "events-kafka-bootstrap.kafka:9093\\,events-kafka-bootstrap.kafka:9094"
            )
        }
    )
    kafka = policy_of(documents, "trends")["egress"][0]
    assert kafka["ports"] == [{"port": 9093, "protocol": "TCP"}, {"port": 9094, "protocol": "TCP"}]
    peer = kafka["to"][0]
    assert peer["podSelector"]["matchLabels"]["strimzi.io/cluster"] == "events"
    assert peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "kafka"


def test_store_egress_reaches_the_store_pods_only(render: Render) -> None:
    for values in ([], [PULUMI_CONTRACT]):
        documents = render(values_files=values)
        for service in SERVICES:
            store = policy_of(documents, service)["egress"][1]
            assert store["to"] == [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
                    },
                    # The Pulumi program's Valkey, selected by its own selector labels.
                    "podSelector": {"matchLabels": STORE_SELECTOR},
                }
            ], service


def test_store_default_matches_the_programs_valkey() -> None:
    import sys

    infra = str(CHART_DIR.parents[1] / "infra")
    if infra not in sys.path:
        sys.path.insert(0, infra)
    from starling_infra import meta

    assert meta.selector_labels(meta.STORE_NAME) == STORE_SELECTOR


def test_empty_store_pod_labels_are_refused(helm: Path) -> None:
    result = run_helm(
        helm, "template", "starling", str(CHART_DIR), "--set", "networkPolicy.store.podLabels=null"
    )
    # The schema names the key (a null removes it: helm merges maps, {} keeps the default).
    assert result.returncode != 0
    assert "/networkPolicy/store" in result.stderr and "podLabels" in result.stderr


def test_only_the_notifier_may_call_the_push_webhook(render: Render) -> None:
    documents = render(values_files=[ALL_FEATURES])
    for service in SERVICES:
        egress = policy_of(documents, service)["egress"]
        webhook = [rule for rule in egress if "ipBlock" in rule.get("to", [{}])[0]]
        if service == "notifier":
            assert webhook == [
                {
                    "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                    "ports": [{"port": 8443, "protocol": "TCP"}],
                }
            ]
        else:
            assert webhook == [], service


# --- names and labels --------------------------------------------------------------------


def test_every_object_carries_the_standard_labels(render: Render) -> None:
    for document in render(values_files=[ALL_FEATURES]):
        labels = document["metadata"]["labels"]
        missing = [key for key in LABEL_KEYS if key not in labels]
        assert missing == [], document["metadata"]["name"]
        assert labels["app.kubernetes.io/part-of"] == "starling"
        assert labels["app.kubernetes.io/name"] == "starling-services"
        assert labels["app.kubernetes.io/instance"] == "starling"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/component"] in SERVICES
        assert document["metadata"]["namespace"] == NAMESPACE


def test_selectors_pick_exactly_one_service(render: Render) -> None:
    documents = render()
    for service, deployment in by_kind(documents, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector == {
            "app.kubernetes.io/name": "starling-services",
            "app.kubernetes.io/instance": "starling",
            "app.kubernetes.io/component": service,
        }
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    for key, service_object in by_kind(documents, "Service").items():
        assert service_object["spec"]["selector"][
            "app.kubernetes.io/component"
        ] == key.removesuffix("-metrics")


LONGEST_RELEASE = "r" * 53  # helm refuses release names longer than 53 characters


@pytest.mark.parametrize(
    "set_values",
    [
        pytest.param({}, id="release-name"),
        pytest.param({"fullnameOverride": "f" * 63}, id="fullname-override"),
        pytest.param({"nameOverride": "n" * 63}, id="name-override"),
    ],
)
def test_names_fit_in_63_characters_and_stay_distinct(
    render: Render, set_values: dict[str, str]
) -> None:
    documents = render(values_files=[ALL_FEATURES], set_values=set_values, release=LONGEST_RELEASE)
    for document in documents:
        name = document["metadata"]["name"]
        assert len(name) <= 63, name
        assert not name.endswith("-"), name
        for value in document["metadata"]["labels"].values():
            assert len(value) <= 63, value
    # Cutting must never merge two objects: the component suffix always survives.
    names = Counter((doc["kind"], doc["metadata"]["name"]) for doc in documents)
    assert [entry for entry, count in names.items() if count > 1] == []
    for kind in ("Deployment", "NetworkPolicy", "ServiceAccount"):
        for service, document in by_kind(documents, kind).items():
            assert document["metadata"]["name"].endswith(f"-{service}")


def test_release_named_after_the_chart_is_not_repeated(render: Render) -> None:
    documents = render(release="starling-services")
    deployment = by_kind(documents, "Deployment")["gateway"]
    assert deployment["metadata"]["name"] == "starling-services-gateway"
