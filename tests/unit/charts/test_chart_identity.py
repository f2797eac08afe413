"""Identity in the chart: the built-in identity service (seed as a file, restricted pod,
probes on the metrics port), the gateway's token or header mode, and the NetworkPolicies
that go with each mode. Optional features (header trust, sign-up, dev mode, demo accounts)
are off by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.charts.conftest import CHART_DIR, Manifest, Render, by_kind, run_helm

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

ALL_FEATURES = CHART_DIR / "ci" / "values-all-features.yaml"
GATEWAY_ONLY = CHART_DIR / "ci" / "values-gateway-only.yaml"
HEADER_AUTH = CHART_DIR / "ci" / "values-header-auth.yaml"
IDENTITY_URL = "http://starling-starling-services-identity.starling.svc:8081"


def _container(deployment: Manifest) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = main
    return result


def _env(deployment: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(deployment)["env"]}


def _ingress_for_port(policy: Manifest, port: int) -> list[dict[str, Any]]:
    return [
        rule
        for rule in policy["spec"]["ingress"]
        if any(entry["port"] == port for entry in rule["ports"])
    ]


# --- the identity service ---------------------------------------------------------------


def test_identity_is_deployed_by_default_with_its_objects(render: Render) -> None:
    documents = render()
    for kind in ("Deployment", "ServiceAccount", "NetworkPolicy"):
        assert "identity" in by_kind(documents, kind), kind
    services = by_kind(documents, "Service")
    assert services["identity"]["spec"]["type"] == "ClusterIP"
    assert services["identity"]["spec"]["ports"] == [
        {"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}
    ]
    assert services["identity-metrics"]["spec"]["type"] == "ClusterIP"


def test_identity_runs_its_command_on_port_8081(render: Render) -> None:
    deployment = by_kind(render(), "Deployment")["identity"]
    main = _container(deployment)
    assert main["command"] == ["starling", "run", "identity"]
    assert {"name": "http", "containerPort": 8081, "protocol": "TCP"} in main["ports"]
    env = _env(deployment)
    assert env["HTTP_PORT"] == "8081"
    assert env["KAFKA_SASL_USERNAME"] == "starling-identity"
    assert env["KAFKA_SASL_PASSWORD_FILE"] == "/var/run/secrets/starling/kafka-user/password"
    # Health and readiness on the metrics port, as every service.
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_identity_seed_is_a_file_never_an_env_value(render: Render) -> None:
    deployment = by_kind(render(values_files=[ALL_FEATURES]), "Deployment")["identity"]
    env = _env(deployment)
    seed_path = env["STARLING_IDENTITY_SEED_FILE"]
    mounts = {m["name"]: m for m in _container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = mounts["identity-seed"]
    assert mount["readOnly"] is True
    assert seed_path == f"{mount['mountPath']}/seed"
    assert volumes["identity-seed"]["secret"] == {
        "secretName": "identity-seed",
        "defaultMode": 0o440,
        "items": [{"key": "seed.bin", "path": "seed"}],
    }
    # No variable takes its value from the seed Secret.
    for value in env.values():
        if isinstance(value, dict):
            assert value["secretKeyRef"]["name"] != "identity-seed"


def test_only_identity_mounts_the_seed(render: Render) -> None:
    for name, deployment in by_kind(render(), "Deployment").items():
        volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert ("identity-seed" in volumes) == (name == "identity"), name


def test_identity_options_are_off_by_default(render: Render) -> None:
    env = _env(by_kind(render(), "Deployment")["identity"])
    assert env["STARLING_IDENTITY_SIGNUP"] == "false"
    assert env["STARLING_IDENTITY_DEV_MODE"] == "false"
    assert env["STARLING_IDENTITY_DEMO_USERS"] == "0"
    assert "STARLING_IDENTITY_TRUSTED_PROXIES" not in env
    assert env["STARLING_IDENTITY_SIGNING_KEYS"] == "k1"
    assert env["STARLING_IDENTITY_TOKEN_TTL_S"] == "3600"
    assert env["STARLING_IDENTITY_AUDIENCE"] == "starling"
    assert env["STARLING_IDENTITY_ISSUER"] == IDENTITY_URL


def test_identity_options_reach_the_service(render: Render) -> None:
    env = _env(by_kind(render(values_files=[ALL_FEATURES]), "Deployment")["identity"])
    assert env["STARLING_IDENTITY_ISSUER"] == "https://id.example.com"
    assert env["STARLING_IDENTITY_SIGNING_KEYS"] == "k2,k1"
    assert env["STARLING_IDENTITY_TOKEN_TTL_S"] == "900"
    assert env["STARLING_IDENTITY_SIGNUP"] == "true"
    assert env["STARLING_IDENTITY_DEV_MODE"] == "true"
    assert env["STARLING_IDENTITY_DEMO_USERS"] == "100"
    assert env["STARLING_IDENTITY_TRUSTED_PROXIES"] == "10.0.0.0/8,fd00::/8"
    assert env["HTTP_PORT"] == "8443"


def test_identity_http_port_is_open_to_the_ingress_and_metrics_to_monitoring(
    render: Render,
) -> None:
    policy = by_kind(render(), "NetworkPolicy")["identity"]
    (metrics,) = _ingress_for_port(policy, 9100)
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in (metrics["from"])
    (http,) = _ingress_for_port(policy, 8081)
    # Its own namespace (the gateway fetches keys) and the ingress controller's: no other.
    assert http["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    # Kafka (its login events), the store (accounts, rate limits, revocations), DNS.
    assert len(policy["spec"]["egress"]) == 3


# --- the gateway in token mode -----------------------------------------------------------


def test_gateway_verifies_tokens_of_the_builtin_issuer_by_default(render: Render) -> None:
    env = _env(by_kind(render(), "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "token"
    assert env["STARLING_GATEWAY_ISSUER"] == IDENTITY_URL
    assert env["STARLING_GATEWAY_AUDIENCE"] == "starling"
    assert env["STARLING_GATEWAY_JWKS_URL"] == f"{IDENTITY_URL}/.well-known/jwks.json"
    assert env["STARLING_GATEWAY_REVOCATION"] == "store"
    assert "STARLING_GATEWAY_TRUSTED_PROXIES" not in env


def test_gateway_issuer_follows_the_public_url(render: Render) -> None:
    documents = render(values_files=[ALL_FEATURES])
    gateway = _env(by_kind(documents, "Deployment")["gateway"])
    identity = _env(by_kind(documents, "Deployment")["identity"])
    assert gateway["STARLING_GATEWAY_ISSUER"] == identity["STARLING_IDENTITY_ISSUER"]
    # Keys still come over the in-cluster address.
    assert gateway["STARLING_GATEWAY_JWKS_URL"] == (
        "http://starling-starling-services-identity.starling.svc:8443/.well-known/jwks.json"
    )


def test_gateway_with_an_external_issuer(render: Render) -> None:
    documents = render(values_files=[GATEWAY_ONLY])
    assert "identity" not in by_kind(documents, "Deployment")
    env = _env(by_kind(documents, "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "token"
    assert env["STARLING_GATEWAY_ISSUER"] == "https://login.example.com/realms/starling"
    assert env["STARLING_GATEWAY_AUDIENCE"] == "starling-api"
    assert env["STARLING_GATEWAY_JWKS_URL"] == (
        "https://login.example.com:8443/realms/starling/protocol/openid-connect/certs"
    )
    # Nobody writes a revocation list for an external provider.
    assert env["STARLING_GATEWAY_REVOCATION"] == "none"


def test_external_issuer_without_jwks_url_uses_discovery(render: Render) -> None:
    documents = render(values_files=[GATEWAY_ONLY], set_values={"identity.jwksUrl": ""})
    env = _env(by_kind(documents, "Deployment")["gateway"])
    assert "STARLING_GATEWAY_JWKS_URL" not in env
    egress = by_kind(documents, "NetworkPolicy")["gateway"]["spec"]["egress"]
    # The issuer's port (https: 443), to any destination: it may be in or outside the cluster.
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in egress


def test_gateway_reaches_the_keys_and_nothing_more(render: Render) -> None:
    egress = by_kind(render(), "NetworkPolicy")["gateway"]["spec"]["egress"]
    assert egress[-1] == {
        "to": [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "starling-services",
                        "app.kubernetes.io/instance": "starling",
                        "app.kubernetes.io/component": "identity",
                    }
                }
            }
        ],
        "ports": [{"port": 8081, "protocol": "TCP"}],
    }
    external = by_kind(render(values_files=[GATEWAY_ONLY]), "NetworkPolicy")["gateway"]
    assert {"ports": [{"port": 8443, "protocol": "TCP"}]} in external["spec"]["egress"]


def test_other_services_get_no_issuer_egress(render: Render) -> None:
    policies = by_kind(render(), "NetworkPolicy")
    for name in ("ingestion", "trends", "timelines", "notifier"):
        for rule in policies[name]["spec"]["egress"]:
            assert 8081 not in [port["port"] for port in rule["ports"]], name


# --- header trust ------------------------------------------------------------------------


def test_header_trust_is_off_by_default(render: Render) -> None:
    documents = render()
    assert _env(by_kind(documents, "Deployment")["gateway"])["STARLING_GATEWAY_AUTH"] == "token"
    (http,) = _ingress_for_port(by_kind(documents, "NetworkPolicy")["gateway"], 8080)
    # Its own namespace (the gateway fetches keys) and the ingress controller's: no other.
    assert http["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]


def test_header_trust_admits_only_the_named_namespaces(render: Render) -> None:
    documents = render(values_files=[HEADER_AUTH])
    env = _env(by_kind(documents, "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "header"
    assert env["STARLING_GATEWAY_TRUSTED_PROXIES"] == "10.42.0.0/16"
    assert "STARLING_GATEWAY_ISSUER" not in env
    policy = by_kind(documents, "NetworkPolicy")["gateway"]
    (http,) = _ingress_for_port(policy, 8080)
    assert http["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["ingress-auth"],
                    }
                ]
            }
        }
    ]
    # Metrics stay as they were: release namespace and monitoring.
    (metrics,) = _ingress_for_port(policy, 9100)
    assert {"podSelector": {}} in metrics["from"]
    # No issuer to reach in header mode.
    assert all(8081 not in [p["port"] for p in rule["ports"]] for rule in policy["spec"]["egress"])
    assert "identity" not in by_kind(documents, "Deployment")


# --- bad combinations fail the render, naming the keys -----------------------------------

REJECTED = [
    pytest.param(
        {"identity.issuerUrl": "https://login.example.com"},
        "services.identity.enabled to false",
        id="external-issuer-with-builtin",
    ),
    pytest.param(
        {"services.identity.enabled": "false"},
        "identity.issuerUrl is empty",
        id="no-issuer-at-all",
    ),
    pytest.param(
        {"identity.jwksUrl": "https://keys.example.com/jwks"},
        "identity.jwksUrl applies to an external provider",
        id="jwks-without-external-issuer",
    ),
    pytest.param(
        {"identity.demoUsers": "5"}, "identity.demoUsers needs identity.devMode", id="demo"
    ),
    pytest.param(
        {"gateway.trustUserHeader.enabled": "true", "gateway.trustUserHeader.namespaces[0]": "a"},
        "gateway.trustUserHeader.proxies",
        id="header-without-proxies",
    ),
    pytest.param(
        {
            "gateway.trustUserHeader.enabled": "true",
            "gateway.trustUserHeader.proxies[0]": "10.0.0.0/8",
        },
        "gateway.trustUserHeader.namespaces",
        id="header-without-namespaces",
    ),
    pytest.param(
        {
            "gateway.trustUserHeader.enabled": "true",
            "gateway.trustUserHeader.proxies[0]": "10.0.0.0/8",
            "gateway.trustUserHeader.namespaces[0]": "auth",
            "gateway.service.type": "LoadBalancer",
        },
        "gateway.service.type ClusterIP",
        id="header-with-exposed-gateway",
    ),
    pytest.param(
        {"gateway.trustUserHeader.proxies[0]": "everywhere"},
        "/gateway/trustUserHeader/proxies/0",
        id="bad-proxy-cidr",
    ),
    pytest.param({"identity.issuerUrl": "ftp://x"}, "/identity/issuerUrl", id="bad-issuer-url"),
    pytest.param({"identity.signingKeys": "null"}, "signingKeys", id="no-signing-keys"),
    pytest.param(
        {"identity.tokenTtlSeconds": "5"}, "/identity/tokenTtlSeconds", id="ttl-too-short"
    ),
]


@pytest.mark.parametrize(("set_values", "named"), REJECTED)
def test_helm_rejects_bad_identity_values(
    helm: Path, set_values: dict[str, str], named: str
) -> None:
    args = ["template", "starling", str(CHART_DIR)]
    for key, value in set_values.items():
        args += ["--set", f"{key}={value}"]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"helm accepted {set_values}"
    assert named in result.stderr, result.stderr
