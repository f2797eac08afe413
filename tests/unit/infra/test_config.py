"""Stack config: every bad value fails before any resource exists, naming the key."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from starling_infra.config import (
    SEED_COMMAND,
    StarlingConfigError,
    config_reference,
    markdown_table,
)
from tests.unit.infra.harness import REPO_ROOT, run_expecting_failure, run_program

pytestmark = pytest.mark.unit

BAD_CONFIGS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "unknown key",
        {"overrides": {"starling:kafka.brokrs": 3}},
        ("starling:kafka.brokrs", "unknown key", "kafka.brokers"),
    ),
    (
        "unknown section",
        {"overrides": {"starling:kafak.brokers": 3}},
        ("starling:kafak", "unknown key", "kafka.brokers", "airflow.executor"),
    ),
    (
        "wrong type (integer)",
        {"overrides": {"starling:kafka.brokers": "three"}},
        ("starling:kafka.brokers", "valid integer", "'three'"),
    ),
    (
        "wrong type (boolean)",
        {"overrides": {"starling:kafka.devTools": "maybe"}},
        ("starling:kafka.devTools", "valid boolean"),
    ),
    (
        "replicas below min ISR",
        {"overrides": {"starling:kafka.minInsyncReplicas": 2}},
        ("starling:kafka.replicationFactor (1)", "starling:kafka.minInsyncReplicas (2)"),
    ),
    (
        "replicas above brokers",
        {"overrides": {"starling:kafka.replicationFactor": 3}},
        ("starling:kafka.replicationFactor (3)", "starling:kafka.brokers (1)"),
    ),
    (
        "partitions below 1",
        {"overrides": {"starling:kafka.defaultPartitions": 0}},
        ("starling:kafka.defaultPartitions", "greater than or equal to 1"),
    ),
    (
        "unknown executor",
        {"overrides": {"starling:airflow.executor": "SequentialExecutor"}},
        (
            "starling:airflow.executor",
            "'SequentialExecutor'",
            "LocalExecutor, CeleryExecutor, KubernetesExecutor",
            "comma-separated",
        ),
    ),
    (
        "repeated executor",
        {"overrides": {"starling:airflow.executor": "LocalExecutor,LocalExecutor"}},
        ("starling:airflow.executor", "without repeats"),
    ),
    (
        "missing secret",
        {"seed": None},
        ("starling:secretSeed", SEED_COMMAND),
    ),
    (
        "secret stored in plain text",
        {"seed_is_secret": False},
        ("starling:secretSeed", "plain text", SEED_COMMAND),
    ),
    (
        "secret too short",
        {"seed": "tooshort"},
        ("starling:secretSeed", "at least 32 characters", SEED_COMMAND),
    ),
    (
        "storage type outside the enum",
        {"overrides": {"starling:kafka.storageType": "ssd"}},
        ("starling:kafka.storageType", "'ephemeral' or 'persistent'"),
    ),
    (
        "quantity that is not one",
        {"overrides": {"starling:kafka.storageSize": "10 GB"}},
        ("starling:kafka.storageSize", "'10 GB' is not a Kubernetes quantity", "512Mi"),
    ),
    (
        "floating image tag",
        {"overrides": {"starling:images.valkey": "valkey/valkey:latest"}},
        ("starling:images.valkey", "latest"),
    ),
    (
        "image without a tag",
        {"overrides": {"starling:images.airflow": "apache/airflow"}},
        ("starling:images.airflow", "repository:tag"),
    ),
    (
        "even number of controllers",
        {"overrides": {"starling:kafka.controllers": 2}},
        ("starling:kafka.controllers", "odd"),
    ),
    (
        "gitSync without a repository",
        {"overrides": {"starling:airflow.dags": "gitSync"}},
        ("starling:airflow.dags", "starling:airflow.gitSyncRepo"),
    ),
    (
        "CRDs from the chart without the chart",
        {"overrides": {"starling:strimzi.installOperator": False}},
        ("starling:strimzi.crdsFrom", "starling:strimzi.installOperator"),
    ),
    (
        "CRD directory without CRDs",
        {
            "overrides": {
                "starling:strimzi.crdsFrom": "directory",
                "starling:strimzi.crdsDirectory": "no/such/dir",
            }
        },
        ("starling:strimzi.crdsDirectory", "no/such/dir"),
    ),
    (
        "Airflow without waiting for Kafka",
        {"overrides": {"starling:kafka.waitForReady": False}},
        ("starling:airflow.enabled", "starling:kafka.waitForReady"),
    ),
]


@pytest.mark.parametrize(
    ("case", "run_kwargs", "expected"), BAD_CONFIGS, ids=[case for case, _, _ in BAD_CONFIGS]
)
def test_bad_config_fails_before_any_resource(
    case: str, run_kwargs: dict[str, Any], expected: tuple[str, ...]
) -> None:
    error, mocks, monitor = run_expecting_failure("dev", **run_kwargs)
    assert isinstance(error, StarlingConfigError), f"{case}: {error!r}"
    message = str(error)
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in:\n{message}"
    assert mocks.created == [], f"{case}: resources were created before the error"
    assert monitor.registered == [], f"{case}: resources were registered before the error"


def test_errors_never_echo_the_seed() -> None:
    seed = "s3cret-but-short"
    error, _, _ = run_expecting_failure("dev", seed=seed)
    assert seed not in str(error)


def test_all_problems_are_reported_at_once() -> None:
    error, _, _ = run_expecting_failure(
        "dev",
        overrides={"starling:kafka.brokers": "x", "starling:airflow.executor": "Nope"},
    )
    assert "starling:kafka.brokers" in str(error)
    assert "starling:airflow.executor" in str(error)


def test_executor_combinations_are_accepted_and_normalised() -> None:
    run = run_program(
        "dev", overrides={"starling:airflow.executor": "LocalExecutor, KubernetesExecutor"}
    )
    values = run.named("airflow-release").inputs["values"]
    assert values["executor"] == "LocalExecutor,KubernetesExecutor"


def test_list_values_arrive_json_encoded() -> None:
    run = run_program("dev", overrides={"starling:kafka.superUsers": ["User:break-glass"]})
    (kafka,) = run.of_kind("Kafka")
    assert kafka.inputs["spec"]["kafka"]["authorization"]["superUsers"] == ["User:break-glass"]


def test_structured_config_means_the_same_as_flat_keys() -> None:
    # dev's RF 1 would be refused on three brokers: let the defaults follow the broker count.
    replication = ("starling:kafka.replicationFactor", "starling:kafka.minInsyncReplicas")
    flat = run_program("dev", overrides={"starling:kafka.brokers": 3}, remove=replication)
    structured = run_program(
        "dev",
        overrides={"starling:kafka": {"brokers": 3}},
        remove=("starling:kafka.brokers", *replication),
    )
    assert (
        flat.named("kafka-pool-dual-role").inputs["spec"]
        == structured.named("kafka-pool-dual-role").inputs["spec"]
    )
    assert flat.named("kafka-pool-dual-role").inputs["spec"]["replicas"] == 3


def test_a_key_set_both_flat_and_structured_is_rejected() -> None:
    error, mocks, _ = run_expecting_failure("dev", overrides={"starling:kafka": {"brokers": 3}})
    assert "starling:kafka.brokers is set twice" in str(error)
    assert mocks.created == []


def test_pulumi_yaml_declares_no_config_keys() -> None:
    # The CLI would demand every declared key and read dotted keys as paths (see the
    # comment in Pulumi.yaml); the model is the schema.
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert "config" not in project


@pytest.mark.parametrize("stack", ["dev", "prod", "ci"])
def test_stack_files_use_model_keys_only(stack: str) -> None:
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    known = {ref.key for ref in config_reference()}
    ours = {
        key.removeprefix("starling:") for key in document["config"] if key.startswith("starling:")
    }
    assert ours <= known, sorted(ours - known)
    # The seed is set per user with --secret, never committed.
    assert "secretSeed" not in ours


def test_project_runs_the_program_in_infra() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "starling"
    assert project["main"] == "infra/"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["toolchain"] == "uv"


def test_docs_show_the_current_config_table() -> None:
    doc = (REPO_ROOT / "docs" / "platform.md").read_text()
    assert markdown_table() in doc, "docs/platform.md is out of date: paste markdown_table()"
