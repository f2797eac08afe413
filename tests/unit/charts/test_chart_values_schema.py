"""values.schema.json is the contract: complete, strict, consistent with values.yaml,
and enforced by helm with errors that name the offending key."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.charts.conftest import CHART_DIR, CI_VALUES, run_helm

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def effective(node: Mapping[str, Any], root: Mapping[str, Any] = SCHEMA) -> dict[str, Any]:
    """A schema node with its local `$ref` folded in; the node's own keywords win.

    Draft 2020-12 applies keywords next to `$ref` alongside the referenced schema; the
    chart uses that to give each service its own kafkaUser default.
    """
    merged: dict[str, Any] = {}
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        merged = effective(target, root)
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "properties" and "properties" in merged:
            properties = dict(merged["properties"])
            for name, sub in value.items():
                properties[name] = {**properties.get(name, {}), **sub}
            merged["properties"] = properties
        else:
            merged[key] = value
    return merged


def schema_nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property of the schema, depth first, as (dotted path, effective node)."""
    resolved = effective(node)
    for name, sub in resolved.get("properties", {}).items():
        child = effective(sub)
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from schema_nodes(child, child_path)


def values_without_schema(
    values: Mapping[str, Any], schema: Mapping[str, Any], path: str = ""
) -> list[str]:
    """Dotted paths of values keys the schema does not describe."""
    missing: list[str] = []
    node = effective(schema)
    properties = node.get("properties", {})
    for key, value in values.items():
        key_path = f"{path}.{key}" if path else key
        if key in properties:
            child = effective(properties[key])
            if isinstance(value, Mapping) and "properties" in child:
                missing += values_without_schema(value, child, key_path)
        elif not isinstance(node.get("additionalProperties"), Mapping):
            # A free-form map (labels) describes its entries by additionalProperties.
            missing.append(key_path)
    return missing


def lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_values_key_has_a_schema_entry() -> None:
    assert values_without_schema(VALUES, SCHEMA) == []


def test_the_key_walk_catches_an_undescribed_key() -> None:
    undocumented = {**VALUES, "image": {**VALUES["image"], "digest": "sha256:abc"}}
    assert values_without_schema(undocumented, SCHEMA) == ["image.digest"]


def test_every_schema_property_has_a_description_and_a_default() -> None:
    incomplete = [
        path
        for path, node in schema_nodes(SCHEMA)
        if not node.get("description") or "default" not in node
    ]
    assert incomplete == []


def test_every_schema_property_is_in_values_yaml_with_the_same_default() -> None:
    mismatched = []
    for path, node in schema_nodes(SCHEMA):
        try:
            value = lookup(VALUES, path)
        except KeyError:
            mismatched.append(f"{path}: not in values.yaml")
            continue
        if node["default"] != value:
            mismatched.append(f"{path}: schema default {node['default']!r} != {value!r}")
    assert mismatched == []


def test_every_object_rejects_unknown_keys() -> None:
    def objects(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        if "properties" in node:
            yield path, node
        for name, sub in node.get("properties", {}).items():
            yield from objects(effective(sub), f"{path}.{name}")

    open_objects = [
        path
        for path, node in objects(effective(SCHEMA), "(root)")
        if node.get("additionalProperties") is not False
    ]
    assert open_objects == []
    for name, definition in SCHEMA["$defs"].items():
        if "properties" in definition:
            assert definition["additionalProperties"] is False, name


def test_values_yaml_and_ci_files_satisfy_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.check_schema(SCHEMA)
    assert list(validator.iter_errors(VALUES)) == []
    for path in CI_VALUES:
        merged = _deep_merge(VALUES, yaml.safe_load(path.read_text()))
        errors = [error.message for error in validator.iter_errors(merged)]
        assert errors == [], path.name


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# (what to --set, the text helm's error must contain: the key it names)
REJECTED = [
    pytest.param({"image.tag": "latest"}, "/image/tag", id="tag-latest"),
    pytest.param({"image.tag": ""}, "/image/tag", id="tag-empty"),
    pytest.param({"image.tag": "null"}, "missing property 'tag'", id="tag-missing"),
    pytest.param(
        {"services.ingestion.replicas": "-1"},
        "/services/ingestion/replicas",
        id="replicas-negative",
    ),
    pytest.param({"unknownKey": "1"}, "'unknownKey' not allowed", id="unknown-top-level-key"),
    pytest.param(
        {"services.trends.cpuBoost": "1"}, "'cpuBoost' not allowed", id="unknown-service-key"
    ),
    pytest.param({"services.search.enabled": "true"}, "'search' not allowed", id="unknown-service"),
    pytest.param(
        {"kafka.securityProtocol": "PLAINTEXT"}, "/kafka/securityProtocol", id="plaintext-kafka"
    ),
    pytest.param({"kafka.saslMechanism": "PLAIN"}, "/kafka/saslMechanism", id="sasl-plain"),
    pytest.param({"metrics.port": "70000"}, "/metrics/port", id="port-out-of-range"),
    pytest.param(
        {"services.gateway.resources.limits": "null"},
        "missing property 'limits'",
        id="limits-missing",
    ),
    pytest.param(
        {"services.notifier.resources.requests.memory": "lots"},
        "/services/notifier/resources/requests/memory",
        id="bad-quantity",
    ),
    pytest.param(
        {"gateway.service.type": "ExternalName"}, "/gateway/service/type", id="service-type"
    ),
    pytest.param(
        {"networkPolicy.pushWebhook.cidr": "everywhere"},
        "/networkPolicy/pushWebhook/cidr",
        id="bad-cidr",
    ),
    pytest.param(
        {"podDisruptionBudget.minAvailable": "0"},
        "/podDisruptionBudget/minAvailable",
        id="pdb-zero",
    ),
    pytest.param(
        {
            "services.ingestion.autoscaling.enabled": "true",
            "services.ingestion.autoscaling.minReplicas": "5",
        },
        "services.ingestion.autoscaling.maxReplicas (3) must be >= "
        "services.ingestion.autoscaling.minReplicas (5)",
        id="hpa-max-below-min",
    ),
    pytest.param(
        {"kafka.bootstrapServers": "broker.example.internal:9093"},
        "networkPolicy.kafka.clusterName",
        id="kafka-cluster-not-derivable",
    ),
]


@pytest.mark.parametrize(("set_values", "named"), REJECTED)
def test_helm_rejects_bad_values_naming_the_key(
    helm: Path, set_values: dict[str, str], named: str
) -> None:
    args = ["template", "starling", str(CHART_DIR)]
    for key, value in set_values.items():
        args += ["--set", f"{key}={value}"]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"helm accepted {set_values}"
    assert named in result.stderr, result.stderr


def test_explicit_cluster_name_makes_any_bootstrap_address_work(helm: Path) -> None:
    result = run_helm(
        helm,
        "template",
        "starling",
        str(CHART_DIR),
        "--set",
        "kafka.bootstrapServers=broker.example.internal:9093",
        "--set",
        "networkPolicy.kafka.clusterName=events",
    )
    assert result.returncode == 0, result.stderr
