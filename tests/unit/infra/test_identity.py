"""Identity under Pulumi's mocks: the built-in identity service when no external issuer is
configured, its seed as a mounted file, the gateway's mode, the rules of a prod stack, and an
Airflow UI without a default account. Where the behaviour is the chart's (env, volumes,
NetworkPolicies), the values the program really sent are rendered with the real helm."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from starling_infra.config import StarlingConfigError
from tests.unit.charts.conftest import CHART_DIR, by_kind, template
from tests.unit.infra.harness import TEST_SEED, ProgramRun, run_expecting_failure, run_program

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

EXTERNAL_ISSUER = "https://login.example.com/realms/starling"
HEADER_MODE = {
    "starling:gateway.trustUserHeader.enabled": True,
    "starling:gateway.trustUserHeader.proxies": ["10.42.0.0/16"],
    "starling:gateway.trustUserHeader.namespaces": ["ingress-auth", "oauth2-proxy"],
}
# Prod with the built-in identity service instead of the example's external provider.
PROD_BUILTIN = {"starling:identity.publicUrl": "https://id.example.com"}
PROD_BUILTIN_REMOVE = ("starling:identity.issuerUrl",)


@pytest.fixture(scope="module")
def helm(go_tool: Callable[[str], Path]) -> Path:
    # Built on first use with live progress (tests/conftest.py), like the chart tests.
    return go_tool("helm")


def _render(helm: Path, run: ProgramRun, tmp_path: Path) -> list[dict[str, Any]]:
    """What the services chart renders from the values the program sent."""
    values = tmp_path / f"{run.stack}-values.json"
    values.write_text(json.dumps(run.named("services-release").inputs["values"]))
    return template(helm, [values], release="starling-services", namespace="starling")


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- which identity runs -------------------------------------------------------------------


def test_dev_deploys_the_builtin_identity_service(dev_run: ProgramRun) -> None:
    (component,) = dev_run.of_type("starling:identity:Identity")
    seed = dev_run.named("identity-seed")
    assert seed.parent == component.urn
    assert seed.inputs["metadata"] == {
        "name": "starling-identity-seed",
        "namespace": "starling",
        "labels": seed.inputs["metadata"]["labels"],
    }
    # A Pulumi secret (encrypted in state), derived from the seed but not the seed itself.
    assert seed.secret_paths == {"stringData"}
    value = seed.inputs["stringData"]["seed"]
    assert len(value) == 64 and int(value, 16) >= 0 and TEST_SEED not in value
    release = dev_run.named("services-release")
    assert release.inputs["values"]["services"]["identity"]["enabled"] is True
    assert seed.urn in release.dependencies  # the pod must find its Secret
    assert dev_run.exports["identityUrl"] == "http://starling-services-identity.starling.svc:8081"
    assert dev_run.exports["identityIssuer"] == "http://localhost:8081"
    assert dev_run.exports["identityPortForward"] == (
        "kubectl -n starling port-forward svc/starling-services-identity 8081:8081"
    )


def test_identity_has_its_kafka_user(dev_run: ProgramRun) -> None:
    users = {u.inputs["metadata"]["name"] for u in dev_run.of_kind("KafkaUser")}
    values = dev_run.named("services-release").inputs["values"]
    assert values["services"]["identity"]["kafkaUser"] == "starling-identity"
    assert "starling-identity" in users


def test_an_external_issuer_deploys_no_identity_service(prod_run: ProgramRun) -> None:
    assert prod_run.of_type("starling:identity:Identity") == []
    assert "starling-identity-seed" not in {
        s.inputs["metadata"]["name"] for s in prod_run.of_kind("Secret")
    }
    values = prod_run.named("services-release").inputs["values"]
    assert values["services"]["identity"]["enabled"] is False
    assert values["identity"]["issuerUrl"] == EXTERNAL_ISSUER
    assert values["identity"]["publicUrl"] == ""
    assert "identityUrl" not in prod_run.exports
    assert prod_run.exports["identityIssuer"] == EXTERNAL_ISSUER


def test_dev_with_an_external_issuer_deploys_none_either() -> None:
    run = run_program("dev", overrides={"starling:identity.issuerUrl": "http://dex.auth.svc:5556"})
    assert run.of_type("starling:identity:Identity") == []
    values = run.named("services-release").inputs["values"]
    assert values["services"]["identity"]["enabled"] is False


# --- what the pods get (rendered from the program's values) ---------------------------------


def test_seed_reaches_the_pod_as_a_file_not_an_env_value(
    helm: Path, dev_run: ProgramRun, tmp_path: Path
) -> None:
    documents = _render(helm, dev_run, tmp_path)
    identity = by_kind(documents, "Deployment")["identity"]
    env = _env(identity)
    pod = identity["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["identity-seed"]["secret"]["secretName"] == "starling-identity-seed"
    assert volumes["identity-seed"]["secret"]["items"] == [{"key": "seed", "path": "seed"}]
    assert env["STARLING_IDENTITY_SEED_FILE"] == f"{mounts['identity-seed']['mountPath']}/seed"
    for name, value in env.items():
        if isinstance(value, dict):
            assert value["secretKeyRef"]["name"] != "starling-identity-seed", name
    seed_value = dev_run.named("identity-seed").inputs["stringData"]["seed"]
    assert seed_value not in json.dumps(documents)


def test_dev_identity_settings(helm: Path, dev_run: ProgramRun, tmp_path: Path) -> None:
    env = _env(by_kind(_render(helm, dev_run, tmp_path), "Deployment")["identity"])
    assert env["STARLING_IDENTITY_ISSUER"] == "http://localhost:8081"
    assert env["STARLING_IDENTITY_SIGNUP"] == "true"
    assert env["STARLING_IDENTITY_DEV_MODE"] == "true"
    assert env["STARLING_IDENTITY_DEMO_USERS"] == "10000"
    assert env["STARLING_IDENTITY_SIGNING_KEYS"] == "k1"
    assert env["HTTP_PORT"] == "8081"


def test_gateway_token_mode_with_the_builtin_issuer(
    helm: Path, dev_run: ProgramRun, tmp_path: Path
) -> None:
    env = _env(by_kind(_render(helm, dev_run, tmp_path), "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "token"
    assert env["STARLING_GATEWAY_ISSUER"] == "http://localhost:8081"
    assert env["STARLING_GATEWAY_AUDIENCE"] == "starling"
    assert env["STARLING_GATEWAY_JWKS_URL"] == (
        "http://starling-services-identity.starling.svc:8081/.well-known/jwks.json"
    )
    assert env["STARLING_GATEWAY_REVOCATION"] == "store"


def test_gateway_token_mode_with_an_external_issuer(
    helm: Path, prod_run: ProgramRun, tmp_path: Path
) -> None:
    documents = _render(helm, prod_run, tmp_path)
    env = _env(by_kind(documents, "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "token"
    assert env["STARLING_GATEWAY_ISSUER"] == EXTERNAL_ISSUER
    assert env["STARLING_GATEWAY_AUDIENCE"] == "starling"
    assert "STARLING_GATEWAY_JWKS_URL" not in env  # the issuer's discovery document
    assert env["STARLING_GATEWAY_REVOCATION"] == "none"
    assert "identity" not in by_kind(documents, "Deployment")


def test_gateway_jwks_url_of_an_external_issuer(helm: Path, tmp_path: Path) -> None:
    run = run_program(
        "prod", overrides={"starling:identity.jwksUrl": "https://keys.example.com/jwks.json"}
    )
    env = _env(by_kind(_render(helm, run, tmp_path), "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_JWKS_URL"] == "https://keys.example.com/jwks.json"


def test_gateway_header_mode_admits_only_the_named_namespaces(helm: Path, tmp_path: Path) -> None:
    run = run_program("dev", overrides=HEADER_MODE)
    assert run.of_type("starling:identity:Identity") == []
    documents = _render(helm, run, tmp_path)
    env = _env(by_kind(documents, "Deployment")["gateway"])
    assert env["STARLING_GATEWAY_AUTH"] == "header"
    assert env["STARLING_GATEWAY_TRUSTED_PROXIES"] == "10.42.0.0/16"
    assert "STARLING_GATEWAY_ISSUER" not in env
    policy = by_kind(documents, "NetworkPolicy")["gateway"]
    (http,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 8080]
    (peer,) = http["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert expression == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["ingress-auth", "oauth2-proxy"],
    }
    assert "identity" not in by_kind(documents, "Deployment")


def test_token_mode_keeps_the_gateway_reachable_for_clients(
    helm: Path, dev_run: ProgramRun, tmp_path: Path
) -> None:
    policy = by_kind(_render(helm, dev_run, tmp_path), "NetworkPolicy")["gateway"]
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    # Its namespace and the ingress controller's (the chart's default label), no other.
    assert rules[8080]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in (rules[9100]["from"])


def test_header_mode_accepts_structured_config() -> None:
    run = run_program(
        "dev",
        overrides={
            "starling:gateway": {
                "trustUserHeader": {
                    "enabled": True,
                    "proxies": ["10.42.0.0/16"],
                    "namespaces": ["ingress-auth"],
                }
            }
        },
    )
    values = run.named("services-release").inputs["values"]
    assert values["gateway"]["trustUserHeader"]["namespaces"] == ["ingress-auth"]


# --- the rules of a prod stack ----------------------------------------------------------------

BAD_IDENTITY_CONFIGS: list[tuple[str, str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    (
        "demo users in prod",
        "prod",
        {**PROD_BUILTIN, "starling:identity.demoUsers": 10},
        PROD_BUILTIN_REMOVE,
        ("starling:identity.demoUsers", "prod stack", "no default account"),
    ),
    (
        "dev mode in prod",
        "prod",
        {**PROD_BUILTIN, "starling:identity.devMode": True},
        PROD_BUILTIN_REMOVE,
        ("starling:identity.devMode", "prod stack", "starling:environment"),
    ),
    (
        "built-in service in prod without a public URL",
        "prod",
        {},
        PROD_BUILTIN_REMOVE,
        ("starling:identity.publicUrl is required in a prod stack",),
    ),
    (
        "plain-http issuer in prod",
        "prod",
        {"starling:identity.issuerUrl": "http://login.example.com"},
        (),
        ("starling:identity.issuerUrl must be an https URL",),
    ),
    (
        "a stack without an environment is prod",
        "dev",
        {},
        ("starling:environment",),
        ("starling:identity.demoUsers is 10000 in a prod stack",),
    ),
    (
        "demo users without dev mode",
        "dev",
        {"starling:identity.devMode": False},
        (),
        ("starling:identity.demoUsers needs starling:identity.devMode",),
    ),
    (
        "unknown environment",
        "dev",
        {"starling:environment": "staging"},
        (),
        ("starling:environment", "'dev' or 'prod'"),
    ),
    (
        "issuer that is not a URL",
        "dev",
        {"starling:identity.issuerUrl": "login.example.com"},
        (),
        ("starling:identity.issuerUrl", "http(s) URL"),
    ),
    (
        "JWKS URL without an external issuer",
        "dev",
        {"starling:identity.jwksUrl": "https://keys.example.com/jwks"},
        (),
        ("starling:identity.jwksUrl", "starling:identity.issuerUrl"),
    ),
    (
        "public URL with an external issuer",
        "dev",
        {"starling:identity.issuerUrl": EXTERNAL_ISSUER},
        (),
        ("starling:identity.publicUrl", "starling:identity.issuerUrl"),
    ),
    (
        "header trust without proxies",
        "dev",
        {"starling:gateway.trustUserHeader.enabled": True},
        (),
        ("starling:gateway.trustUserHeader.proxies",),
    ),
    (
        "header trust without namespaces",
        "dev",
        {
            "starling:gateway.trustUserHeader.enabled": True,
            "starling:gateway.trustUserHeader.proxies": ["10.0.0.0/8"],
        },
        (),
        ("starling:gateway.trustUserHeader.namespaces",),
    ),
    (
        "proxy that is not a CIDR",
        "dev",
        {"starling:gateway.trustUserHeader.proxies": ["10.0.0.1/8"]},
        (),
        ("starling:gateway.trustUserHeader.proxies[0]", "CIDR"),
    ),
    (
        "namespace that is not a name",
        "dev",
        {"starling:gateway.trustUserHeader.namespaces": ["Ingress_Auth"]},
        (),
        ("starling:gateway.trustUserHeader.namespaces[0]", "'Ingress_Auth'"),
    ),
    (
        "unknown key under trustUserHeader",
        "dev",
        {"starling:gateway.trustUserHeader.enable": True},
        (),
        ("starling:gateway.trustUserHeader.enable", "unknown key", "enabled"),
    ),
    (
        "no signing key",
        "dev",
        {"starling:identity.signingKeys": []},
        (),
        ("starling:identity.signingKeys",),
    ),
]


@pytest.mark.parametrize(
    ("case", "stack", "overrides", "remove", "expected"),
    BAD_IDENTITY_CONFIGS,
    ids=[case[0] for case in BAD_IDENTITY_CONFIGS],
)
def test_bad_identity_config_fails_before_any_resource(
    case: str,
    stack: str,
    overrides: dict[str, Any],
    remove: tuple[str, ...],
    expected: tuple[str, ...],
) -> None:
    # The dev file's public URL default must not hide the prod rules; publicUrl with an
    # external issuer is the one case that needs both keys.
    if case == "public URL with an external issuer":
        overrides = {**overrides, "starling:identity.publicUrl": "http://localhost:8081"}
    error, mocks, monitor = run_expecting_failure(stack, overrides=overrides, remove=remove)
    assert isinstance(error, StarlingConfigError), f"{case}: {error!r}"
    for fragment in expected:
        assert fragment in str(error), f"{case}: {fragment!r} not in:\n{error}"
    assert mocks.created == [] and monitor.registered == []


def test_prod_builtin_identity_has_no_signup_dev_mode_or_demo_accounts(
    helm: Path, tmp_path: Path
) -> None:
    run = run_program("prod", overrides=PROD_BUILTIN, remove=PROD_BUILTIN_REMOVE)
    assert run.of_type("starling:identity:Identity")
    identity = run.named("services-release").inputs["values"]["identity"]
    assert (identity["signup"], identity["devMode"], identity["demoUsers"]) == (False, False, 0)
    env = _env(by_kind(_render(helm, run, tmp_path), "Deployment")["identity"])
    assert env["STARLING_IDENTITY_SIGNUP"] == "false"
    assert env["STARLING_IDENTITY_DEV_MODE"] == "false"
    assert env["STARLING_IDENTITY_ISSUER"] == "https://id.example.com"


def test_prod_may_open_signup_explicitly() -> None:
    run = run_program(
        "prod",
        overrides={**PROD_BUILTIN, "starling:identity.signup": True},
        remove=PROD_BUILTIN_REMOVE,
    )
    assert run.named("services-release").inputs["values"]["identity"]["signup"] is True


def test_signing_key_rotation_reaches_the_values() -> None:
    run = run_program("dev", overrides={"starling:identity.signingKeys": ["k2", "k1"]})
    identity = run.named("services-release").inputs["values"]["identity"]
    assert identity["signingKeys"] == ["k2", "k1"]
    # Rotation changes key ids only; the seed Secret (and so every key's material) stays.
    assert run.named("identity-seed").inputs == run_program("dev").named("identity-seed").inputs


def test_the_identity_seed_is_not_another_password(dev_run: ProgramRun) -> None:
    seed = dev_run.named("identity-seed").inputs["stringData"]["seed"]
    others = [
        value
        for secret in dev_run.of_kind("Secret")
        if secret.name != "identity-seed"
        for value in (secret.inputs.get("stringData") or {}).values()
    ]
    assert all(seed not in other for other in others)


# --- the Airflow UI -------------------------------------------------------------------------


def test_airflow_has_no_default_admin_account(stack_run: ProgramRun) -> None:
    values = stack_run.named("airflow-release").inputs["values"]
    # The chart's create-user job (FAB, admin/admin by default) does not run.
    assert values["createUserJob"]["enabled"] is False
    core = values["config"]["core"]
    assert core["auth_manager"].endswith("simple_auth_manager.SimpleAuthManager")
    assert core["simple_auth_manager_users"] == "starling-admin:admin"
    assert core["simple_auth_manager_all_admins"] == "False"
    assert "webserver" not in values and "defaultUser" not in json.dumps(values)


def test_airflow_ui_password_derives_from_the_seed(stack_run: ProgramRun) -> None:
    secret = stack_run.named("airflow-ui-admin")
    assert secret.inputs["metadata"]["name"] == "starling-airflow-ui-admin"
    assert secret.inputs["metadata"]["namespace"] == "starling-airflow"
    assert secret.secret_paths == {"stringData"}
    password = secret.inputs["stringData"]["password"]
    assert len(password) == 64 and password != "admin"
    assert json.loads(secret.inputs["stringData"]["passwords.json"]) == {"starling-admin": password}
    release = stack_run.named("airflow-release")
    assert secret.urn in release.dependencies
    assert password not in json.dumps(release.inputs["values"])
    assert password not in json.dumps(stack_run.exports)
    assert stack_run.exports["airflowUser"] == "starling-admin"
    assert "starling-airflow-ui-admin" in stack_run.exports["airflowPasswordCommand"]


def test_airflow_api_server_copies_the_passwords_file_into_a_writable_volume(
    stack_run: ProgramRun,
) -> None:
    """SimpleAuthManager opens its file for appending (a Secret volume is read-only), so an
    init container copies it into an emptyDir, where the config points."""
    values = stack_run.named("airflow-release").inputs["values"]
    api = values["apiServer"]
    volumes = {v["name"]: v for v in api["extraVolumes"]}
    assert volumes["ui-admin"]["secret"]["secretName"] == "starling-airflow-ui-admin"
    assert "emptyDir" in volumes["ui-auth"]
    (init,) = api["extraInitContainers"]
    source, target = init["command"][-2:]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert source == f"{mounts['ui-admin']}/passwords.json"
    assert target == values["config"]["core"]["simple_auth_manager_passwords_file"]
    assert target.startswith(mounts["ui-auth"] + "/")
    (api_mount,) = api["extraVolumeMounts"]
    assert api_mount == {"name": "ui-auth", "mountPath": mounts["ui-auth"]}
    context = init["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True


def test_a_new_seed_rolls_the_airflow_pods(dev_run: ProgramRun) -> None:
    def generation(run: ProgramRun) -> str:
        annotations = run.named("airflow-release").inputs["values"]["airflowPodAnnotations"]
        value: str = annotations["starling.dev/credentials-generation"]
        return value

    assert generation(dev_run) == generation(run_program("dev"))
    assert generation(dev_run) != generation(run_program("dev", seed="f" * 64))


def test_chart_dir_is_the_programs(dev_run: ProgramRun) -> None:
    assert dev_run.named("services-release").inputs["chart"] == str(CHART_DIR)
