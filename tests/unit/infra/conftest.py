"""Fixtures for the Pulumi program's tests: one mocked run per committed stack, shared."""

from __future__ import annotations

import pytest

from tests.unit.infra.harness import CRD_DIR, ProgramRun, run_program


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    return run_program("dev")


@pytest.fixture(scope="session")
def prod_run() -> ProgramRun:
    return run_program("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack_run(
    request: pytest.FixtureRequest, dev_run: ProgramRun, prod_run: ProgramRun
) -> ProgramRun:
    return dev_run if request.param == "dev" else prod_run


@pytest.fixture(scope="session")
def crd_dir() -> object:
    if not CRD_DIR.is_dir() or not any(CRD_DIR.glob("*.yaml")):
        pytest.fail(
            f"the Strimzi 1.2.0 CRDs are missing: expected the YAML files in {CRD_DIR} "
            "(../shared/strimzi-crds/1.2.0 beside the repository). The schema tests cannot "
            "run without them, and must not pass silently."
        )
    return CRD_DIR
