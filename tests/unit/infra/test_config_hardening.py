"""Issue 12: config that cannot hurt you.

Replication that survives a rolling restart, one replication setting for the cluster and its
topics, quantities and names checked as Kubernetes checks them (with floors that can run),
small controller volumes, and image digests. Every bad config fails before the program
registers any resource.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from starling.events.schemas import Trend
from starling.topics import CATALOG, Replication, TopicSpec
from starling_infra.config import KafkaConfig, StarlingConfigError, split_image
from starling_infra.k8s_values import parse_image, parse_quantity
from tests.unit.infra.harness import REPO_ROOT, ProgramRun, run_expecting_failure, run_program

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab12" * 16


def _refused(stack: str, overrides: dict[str, Any], *fragments: str) -> str:
    error, mocks, monitor = run_expecting_failure(stack, overrides=overrides)
    assert isinstance(error, StarlingConfigError), repr(error)
    message = str(error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert mocks.created == [] and monitor.registered == [], "resources came before the error"
    return message


# --- 1. replication that survives one broker down ----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            {"starling:kafka.minInsyncReplicas": 3},
            ("starling:kafka.minInsyncReplicas (3)", "at most", "rolling restart"),
        ),
        (
            {"starling:kafka.brokers": 2, "starling:kafka.replicationFactor": 2},
            ("starling:kafka.minInsyncReplicas (2)", "RF every acks=all write"),
        ),
        (
            {"starling:kafka.replicationFactor": 1, "starling:kafka.minInsyncReplicas": 1},
            ("starling:kafka.replicationFactor is 1 with 3 brokers",),
        ),
    ],
    ids=["min ISR == RF 3", "min ISR == RF 2 on 2 brokers", "RF 1 on 3 brokers"],
)
def test_replication_without_tolerance_for_one_broker_is_refused(
    overrides: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    _refused("prod", overrides, *fragments)


def test_rendered_min_isr_leaves_one_broker_of_slack(prod_run: ProgramRun) -> None:
    (kafka,) = prod_run.of_kind("Kafka")
    config = kafka.inputs["spec"]["kafka"]["config"]
    rf = config["default.replication.factor"]
    assert config["min.insync.replicas"] <= rf - 1
    assert (
        config["transaction.state.log.min.isr"]
        <= config["transaction.state.log.replication.factor"] - 1
    )


def test_a_single_broker_dev_stack_keeps_rf_1(dev_run: ProgramRun) -> None:
    (kafka,) = dev_run.of_kind("Kafka")
    config = kafka.inputs["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (1, 1)


def test_replication_defaults_tolerate_one_broker_loss() -> None:
    for brokers in range(2, 8):
        assert Replication.for_brokers(brokers).tolerates_one_broker_loss(), brokers
    assert not Replication(3, 3).tolerates_one_broker_loss()


# --- 2. one source of truth for replication ------------------------------------------------


def _topics_follow_the_kafka_defaults(run: ProgramRun) -> set[tuple[int, str]]:
    (kafka,) = run.of_kind("Kafka")
    config = kafka.inputs["spec"]["kafka"]["config"]
    expected = (config["default.replication.factor"], str(config["min.insync.replicas"]))
    topics = run.of_kind("KafkaTopic")
    assert {t.inputs["spec"]["topicName"] for t in topics} == CATALOG.names()
    seen = {
        (t.inputs["spec"]["replicas"], t.inputs["spec"]["config"]["min.insync.replicas"])
        for t in topics
    }
    assert seen == {expected}, f"{run.stack}: topics {seen}, Kafka CR {expected}"
    return seen


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_every_topic_replicates_as_the_kafka_resource_says(stack: str) -> None:
    _topics_follow_the_kafka_defaults(run_program(stack))


def test_a_stack_replication_setting_reaches_every_topic() -> None:
    # RF 2 / min ISR 1 on three brokers: the Kafka CR has taken it all along; topics did not.
    run = run_program(
        "prod",
        overrides={"starling:kafka.replicationFactor": 2, "starling:kafka.minInsyncReplicas": 1},
    )
    assert _topics_follow_the_kafka_defaults(run) == {(2, "1")}


@pytest.mark.parametrize("brokers", [1, 2, 3, 5])
def test_the_catalogs_default_is_the_clusters_default(brokers: int) -> None:
    settings = KafkaConfig(brokers=brokers)
    catalog = CATALOG.for_cluster(brokers)
    assert {(t.replicas, t.min_insync_replicas) for t in catalog.all_topics()} == {
        (settings.effective_replication_factor, settings.effective_min_insync_replicas)
    }


def test_for_cluster_applies_one_replication_to_every_topic() -> None:
    catalog = CATALOG.for_cluster(5, Replication(4, 2))
    assert {(t.replicas, t.min_insync_replicas) for t in catalog.all_topics()} == {(4, 2)}
    with pytest.raises(ValueError, match="exceeds the cluster's 2 broker"):
        CATALOG.for_cluster(2, Replication(3, 2))


# --- 3. quantities and names ----------------------------------------------------------------

BAD_VALUES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("kafka.storageSize", "0", ("'0' is below the minimum 1Gi", "log.segment.bytes")),
    ("kafka.brokerMemory", "1", ("'1' is below the minimum 1Gi", "OutOfMemoryError")),
    ("kafka.brokerMemory", "512Mi", ("below the minimum 1Gi",)),
    ("kafka.brokerCpu", "1m", ("below the minimum 100m",)),
    ("kafka.controllerMemory", "100Mi", ("below the minimum 512Mi",)),
    ("kafka.controllerCpu", "0.01", ("below the minimum 100m",)),
    ("kafka.controllerStorageSize", "100Mi", ("below the minimum 1Gi",)),
    ("kafka.storageSize", "-10Gi", ("below the minimum 1Gi",)),
    ("kafka.storageSize", "10 GB", ("is not a Kubernetes quantity", "512Mi")),
    ("kafka.brokerMemory", "2GiB", ("is not a Kubernetes quantity",)),
    ("store.memory", "1Mi", ("below the minimum 64Mi",)),
    ("store.cpu", "10m", ("below the minimum 50m",)),
    ("store.persistenceSize", "1Mi", ("below the minimum 256Mi",)),
    ("airflow.databaseSize", "10Mi", ("below the minimum 1Gi",)),
    ("store.persistenceSize", "1Gi", ("smaller than starling:store.memory (2Gi)",)),
    (
        "kafka.storageClass",
        "Not_A_Valid/Name",
        (
            "'Not_A_Valid/Name' is not a valid StorageClass name: use lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or digit (at most 253 "
            "characters)",
        ),
    ),
    ("kafka.controllerStorageClass", "fast-", ("not a valid StorageClass name",)),
    ("store.storageClass", "SSD", ("not a valid StorageClass name",)),
    ("airflow.storageClass", "a" * 254, ("not a valid StorageClass name",)),
    (
        "kafka.rackTopologyKey",
        "not a label!",
        ("'not a label!' is not a valid label key", "1-63 letters, digits"),
    ),
    ("kafka.rackTopologyKey", "Topology.K8s.io/zone", ("its prefix 'Topology.K8s.io'",)),
    ("kafka.rackTopologyKey", "example.com/" + "z" * 64, ("1-63 letters",)),
]


@pytest.mark.parametrize(
    ("key", "value", "fragments"),
    BAD_VALUES,
    ids=[f"{key}={str(value)[:20]}" for key, value, _ in BAD_VALUES],
)
def test_bad_quantities_and_names_fail_before_any_resource(
    key: str, value: Any, fragments: tuple[str, ...]
) -> None:
    message = _refused("prod", {f"starling:{key}": value}, f"starling:{key}", *fragments)
    # A person reads it: no regular expression leaks into the message.
    assert "^" not in message and "pattern" not in message


def test_quantities_in_every_notation_are_accepted() -> None:
    run = run_program(
        "prod",
        overrides={
            "starling:kafka.brokerMemory": "1.5e9",
            "starling:kafka.brokerCpu": "0.5",
            "starling:kafka.storageSize": "200G",
            "starling:kafka.rackTopologyKey": "rack",
            "starling:kafka.storageClass": "fast.ssd-1",
        },
    )
    broker = run.named("kafka-pool-broker").inputs["spec"]
    assert broker["resources"]["limits"]["memory"] == "1.5e9"
    assert broker["storage"]["volumes"][0]["size"] == "200G"
    assert broker["storage"]["volumes"][0]["class"] == "fast.ssd-1"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", Fraction(2**30)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("250m", Fraction(1, 4)),
        ("1e3", Fraction(1000)),
        ("1E-3", Fraction(1, 1000)),
        (".5k", Fraction(500)),
        ("2.", Fraction(2)),
        ("+5M", Fraction(5_000_000)),
        ("-1", Fraction(-1)),
        ("100", Fraction(100)),
    ],
)
def test_quantities_parse_as_kubernetes_parses_them(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "1GB", "1.2.3", "1e", "1ki", "0x10", "1Gi "])
def test_what_kubernetes_refuses_is_no_quantity(text: str) -> None:
    if text.strip() != text and text.strip():
        # Surrounding blanks are trimmed (the config strips them); the rest must still parse.
        assert parse_quantity(text) == parse_quantity(text.strip())
        return
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def _topic(**changes: Any) -> TopicSpec:
    base: dict[str, Any] = {
        "name": "t",
        "description": "d",
        "event_types": (Trend,),
        "key": "k",
        "partitions": 3,
        "retention_ms": 1000,
    }
    return TopicSpec(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"retention_ms": -5}, "retention_ms must be a positive number of milliseconds"),
        ({"retention_ms": 0}, "retention_ms must be a positive"),
        ({"dlq_retention_ms": -2}, "dlq_retention_ms must be a positive"),
        ({"partitions": 0}, "partitions must be >= 1"),
        ({"partitions": "3"}, "partitions must be a whole number"),
        ({"partitions": True}, "partitions must be a whole number"),
        ({"replicas": 0}, "replicas must be >= 1"),
    ],
)
def test_topic_spec_refuses_what_kafka_cannot_keep(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _topic(**changes)


def test_topic_spec_accepts_infinite_retention() -> None:
    assert _topic(retention_ms=-1).kafka_config()["retention.ms"] == "-1"


# --- 4. controllers get their own small volumes -------------------------------------------


def test_prod_controllers_get_small_volumes_of_their_own(prod_run: ProgramRun) -> None:
    pools = {
        p.inputs["metadata"]["name"]: p.inputs["spec"] for p in prod_run.of_kind("KafkaNodePool")
    }
    (controller,) = pools["controller"]["storage"]["volumes"]
    (broker,) = pools["broker"]["storage"]["volumes"]
    assert broker["size"] == "100Gi"
    assert controller["size"] == "5Gi"
    assert controller["type"] == "persistent-claim"
    assert controller["kraftMetadata"] == "shared"


def test_controller_storage_class_is_its_own_or_the_brokers() -> None:
    shared = run_program("prod", overrides={"starling:kafka.storageClass": "standard"})
    assert (
        shared.named("kafka-pool-controller").inputs["spec"]["storage"]["volumes"][0]["class"]
        == "standard"
    )
    own = run_program(
        "prod",
        overrides={
            "starling:kafka.storageClass": "standard",
            "starling:kafka.controllerStorageClass": "premium",
            "starling:kafka.controllerStorageSize": "2Gi",
        },
    )
    volume = own.named("kafka-pool-controller").inputs["spec"]["storage"]["volumes"][0]
    assert (volume["class"], volume["size"]) == ("premium", "2Gi")
    assert (
        own.named("kafka-pool-broker").inputs["spec"]["storage"]["volumes"][0]["class"]
        == "standard"
    )


# --- 5. images pinned by digest --------------------------------------------------------------


def test_image_refs_accept_digests() -> None:
    assert parse_image(f"valkey/valkey@{DIGEST}").digest == DIGEST
    pinned = parse_image(f"registry:5000/starling/services:0.1.0@{DIGEST}")
    assert (pinned.repository, pinned.tag, pinned.digest) == (
        "registry:5000/starling/services",
        "0.1.0",
        DIGEST,
    )
    assert parse_image("registry:5000/app:1.0").tag == "1.0"
    assert split_image(f"starling/airflow:0.1.0@{DIGEST}") == (
        "starling/airflow",
        f"0.1.0@{DIGEST}",
    )


@pytest.mark.parametrize(
    ("key", "ref", "fragment"),
    [
        ("images.valkey", "valkey/valkey@sha256:abc", "64 lower-case hex"),
        ("images.postgres", f"postgres@md5:{'0' * 32}", "must be 'sha256:'"),
        ("images.services", f"starling/services@{DIGEST}", "has a digest but no tag"),
        ("images.airflow", "starling/airflow", "repository:tag"),
    ],
)
def test_bad_image_refs_are_refused(key: str, ref: str, fragment: str) -> None:
    _refused("prod", {f"starling:{key}": ref}, f"starling:{key}", fragment)


class _Warnings:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[str] = []
        monkeypatch.setattr(pulumi.log, "warn", self._warn)

    def _warn(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.messages.append(message)


def test_prod_warns_about_each_image_pinned_by_tag_only(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings = _Warnings(monkeypatch)
    run_program("prod")
    unpinned = [m for m in warnings.messages if "not pinned by digest" in m]
    assert len(unpinned) == 4, warnings.messages
    assert any(m.startswith("starling:images.services 'starling/services:0.1.0'") for m in unpinned)
    assert all("crane digest" in m for m in unpinned)


def test_digests_silence_the_warning_and_reach_the_render(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings = _Warnings(monkeypatch)
    run = run_program(
        "prod",
        overrides={
            "starling:images.services": f"starling/services:0.1.0@{DIGEST}",
            "starling:images.airflow": f"starling/airflow:0.1.0@{DIGEST}",
            "starling:images.valkey": f"valkey/valkey@{DIGEST}",
            "starling:images.postgres": f"postgres:17.6@{DIGEST}",
        },
    )
    assert not [m for m in warnings.messages if "not pinned by digest" in m]
    images = {
        r.name: [c["image"] for c in r.inputs["spec"]["template"]["spec"]["containers"]]
        for r in run.of_kind("StatefulSet")
    }
    assert images["store-statefulset"] == [f"valkey/valkey@{DIGEST}"]
    assert images["airflow-db-statefulset"] == [f"postgres:17.6@{DIGEST}"]
    airflow = run.named("airflow-release").inputs["values"]
    assert airflow["images"]["airflow"]["tag"] == f"0.1.0@{DIGEST}"


def test_dev_does_not_nag_about_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings = _Warnings(monkeypatch)
    run_program("dev")
    assert not [m for m in warnings.messages if "not pinned by digest" in m]


def test_the_services_chart_runs_a_digest_pinned_image(go_tool: Callable[[str], Path]) -> None:
    """What the program sends for `images.services: repo:tag@sha256:...` passes the chart's
    schema, lands in every container's image and stays out of the (label-safe) version."""
    chart = REPO_ROOT / "charts" / "starling-services"
    repository, tag = split_image(f"registry.example.com/starling/services:0.1.0@{DIGEST}")
    result = subprocess.run(
        [
            str(go_tool("helm")),
            "template",
            "starling",
            str(chart),
            "--namespace",
            "starling",
            "--set",
            f"image.repository={repository}",
            "--set",
            f"image.tag={tag}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    deployments = [
        doc for doc in yaml.safe_load_all(result.stdout) if doc and doc.get("kind") == "Deployment"
    ]
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == f"{repository}:0.1.0@{DIGEST}"
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"
