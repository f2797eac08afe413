"""Every rendered object is valid Kubernetes (1.30 and 1.37 schemas, strict: unknown
fields are errors) and every workload meets the Pod Security "restricted" profile."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.pod_security import is_workload, restricted_violations
from tests.unit.charts.conftest import CI_VALUES, Manifest, Render

pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]

# Strimzi 1.2's floor and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SCENARIOS = [pytest.param(None, id="defaults")] + [
    pytest.param(path, id=path.stem) for path in CI_VALUES
]


def _render_scenario(render: Render, scenario: Path | None) -> list[Manifest]:
    return render(values_files=[scenario] if scenario else [])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_kubernetes(
    render: Render, scenario: Path | None, version: str
) -> None:
    documents = _render_scenario(render, scenario)
    assert documents
    errors = []
    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    assert errors == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_workload_meets_the_restricted_profile(render: Render, scenario: Path | None) -> None:
    workloads = [doc for doc in _render_scenario(render, scenario) if is_workload(doc)]
    assert workloads
    problems = [problem for workload in workloads for problem in restricted_violations(workload)]
    assert problems == []
