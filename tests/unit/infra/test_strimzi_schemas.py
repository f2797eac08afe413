"""Every Strimzi resource the program creates is valid against the Strimzi 1.2.0 CRDs.

The CRDs are read from ../shared/strimzi-crds/1.2.0 (never copied into this repository). The
API server prunes fields a structural schema does not declare, so a misspelt field would be
dropped silently; the "strict" variant below rejects undeclared fields instead, which is what
`kubectl apply --validate=strict` does.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.infra.harness import CRD_DIR, ProgramRun

pytestmark = pytest.mark.unit

STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")


def _strict(schema: Any) -> Any:
    """Close every object schema that lists its properties and does not opt out of pruning."""
    if isinstance(schema, dict):
        closed = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _schemas(crd_dir: Path) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        # The C loader when PyYAML has it: the Kafka CRD alone is 330 kB of YAML.
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            if version["name"] == "v1":
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # metadata is validated by the API server, not by the CRD schema.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[crd["spec"]["names"]["kind"]] = _strict(schema)
    return schemas


def _validate(manifest: dict[str, Any], crd_dir: Path) -> None:
    schemas = _schemas(crd_dir)
    assert manifest["apiVersion"] == "kafka.strimzi.io/v1"
    schema = schemas[manifest["kind"]]
    jsonschema.Draft7Validator(schema).validate(manifest)


def test_the_crds_define_v1_for_every_kind_we_use(crd_dir: Path) -> None:
    assert set(STRIMZI_KINDS) <= set(_schemas(crd_dir))


@pytest.mark.parametrize("kind", STRIMZI_KINDS)
def test_strimzi_resources_match_the_crd(crd_dir: Path, stack_run: ProgramRun, kind: str) -> None:
    resources = stack_run.of_kind(kind)
    assert resources, f"no {kind} in the {stack_run.stack} stack"
    for resource in resources:
        try:
            _validate(resource.manifest(), crd_dir)
        except jsonschema.ValidationError as error:
            pytest.fail(f"{kind} {resource.name}: {error.message} at {list(error.absolute_path)}")


def test_strict_validation_catches_a_misspelt_field(crd_dir: Path, dev_run: ProgramRun) -> None:
    (topic,) = dev_run.of_kind("KafkaTopic")[:1]
    manifest = topic.manifest()
    manifest["spec"] = {**manifest["spec"], "partitons": 3}
    with pytest.raises(jsonschema.ValidationError, match="partitons"):
        _validate(manifest, crd_dir)


def test_validation_catches_the_removed_singular_operation(
    crd_dir: Path, dev_run: ProgramRun
) -> None:
    (user,) = dev_run.of_kind("KafkaUser")[:1]
    manifest = copy.deepcopy(user.manifest())
    acl = manifest["spec"]["authorization"]["acls"][0]
    acl["operation"] = acl.pop("operations")[0]
    with pytest.raises(jsonschema.ValidationError):
        _validate(manifest, crd_dir)


def test_crd_directory_is_the_shared_one() -> None:
    assert CRD_DIR.parts[-3:] == ("shared", "strimzi-crds", "1.2.0")
