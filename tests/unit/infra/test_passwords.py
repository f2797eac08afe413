"""Derived passwords: Pulumi secrets, stable for a seed, distinct per purpose and per seed."""

from __future__ import annotations

import base64

import pytest

from tests.unit.infra.harness import TEST_SEED, ProgramRun, run_program

pytestmark = pytest.mark.unit


def _secret_values(run: ProgramRun) -> dict[tuple[str, str], str]:
    values = {}
    for secret in run.of_kind("Secret"):
        for key, value in (secret.inputs.get("stringData") or {}).items():
            values[(secret.inputs["metadata"]["name"], key)] = value
    return values


def _passwords(run: ProgramRun) -> dict[str, str]:
    return {
        name: value
        for (name, key), value in _secret_values(run).items()
        if key in {"password", "fernet-key", "api-secret-key", "jwt-secret"}
    }


def test_every_generated_value_is_a_pulumi_secret(stack_run: ProgramRun) -> None:
    for secret in stack_run.of_kind("Secret"):
        if "stringData" in secret.inputs:
            assert "stringData" in secret.secret_paths, secret.name


def test_passwords_are_stable_for_the_same_seed(dev_run: ProgramRun) -> None:
    assert _secret_values(run_program("dev")) == _secret_values(dev_run)


def test_passwords_differ_per_user_and_purpose(dev_run: ProgramRun) -> None:
    values = list(_passwords(dev_run).values())
    assert len(values) == len(set(values))
    keys = dev_run.named("airflow-keys").inputs["stringData"]
    assert len(set(keys.values())) == 3


def test_a_new_seed_rotates_every_password(dev_run: ProgramRun) -> None:
    rotated = _passwords(run_program("dev", seed="f" * 64))
    before = _passwords(dev_run)
    assert rotated.keys() == before.keys()
    for name, value in before.items():
        assert rotated[name] != value, name


def test_passwords_are_long_hex_and_do_not_contain_the_seed(dev_run: ProgramRun) -> None:
    for name, value in _passwords(dev_run).items():
        assert TEST_SEED not in value
        if name != "starling-airflow-keys":
            assert len(value) == 64 and int(value, 16) >= 0, name


def test_fernet_key_is_a_valid_fernet_key(dev_run: ProgramRun) -> None:
    key = dev_run.named("airflow-keys").inputs["stringData"]["fernet-key"]
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_exports_hold_no_secret(dev_run: ProgramRun) -> None:
    exported = repr(dev_run.exports)
    for value in _secret_values(dev_run).values():
        assert value not in exported
