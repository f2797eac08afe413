"""Checking bodies against the identity service's checked-in OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from starling.identity.app import load_openapi

DOCUMENT: dict[str, Any] = json.loads(load_openapi())
_URI = "urn:starling:identity:openapi"
# OpenAPI 3.1 schemas are JSON Schema 2020-12; `#/components/...` refs resolve in the document.
_REGISTRY: Registry = Registry().with_resource(
    _URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)


def pointer(*parts: str) -> str:
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def validator_at(json_pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{_URI}#{json_pointer}"},
        registry=_REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def response_schema_pointer(path: str, method: str, status: int, media_type: str) -> str:
    return pointer("paths", path, method, "responses", str(status), "content", media_type, "schema")


def assert_documented(
    path: str, method: str, status: int, body: Any = None, media_type: str = "application/json"
) -> None:
    """The status is documented for the operation and, with a body, the body matches."""
    operation = DOCUMENT["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"{method} {path} -> {status} is undocumented"
    if body is None:
        return
    content = operation["responses"][str(status)]["content"]
    assert media_type in content, f"{method} {path} -> {status} documents no {media_type} body"
    validator_at(response_schema_pointer(path, method.lower(), status, media_type)).validate(body)
