"""The Airflow image installs exactly the versions the lock resolved, on a pinned base."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "airflow" / "Dockerfile"

ARG_TO_PACKAGE = {
    "AIRFLOW_VERSION": "apache-airflow",
    "KAFKA_PROVIDER_VERSION": "apache-airflow-providers-apache-kafka",
    "COMMON_MESSAGING_VERSION": "apache-airflow-providers-common-messaging",
    "CONFLUENT_KAFKA_VERSION": "confluent-kafka",
    "MSGSPEC_VERSION": "msgspec",
    "REDIS_VERSION": "redis",
    "HIREDIS_VERSION": "hiredis",
    "VADERSENTIMENT_VERSION": "vadersentiment",
    "PROMETHEUS_CLIENT_VERSION": "prometheus-client",
    "PYJWT_VERSION": "pyjwt",
    "ARGON2_CFFI_VERSION": "argon2-cffi",
    "UVICORN_VERSION": "uvicorn",
}


def _locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_dockerfile_pins_equal_the_lock() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+_VERSION)=(\S+)$", text, flags=re.M))
    assert set(args) == set(ARG_TO_PACKAGE)
    locked = _locked()
    for arg, package in ARG_TO_PACKAGE.items():
        assert args[arg] == locked[package], (arg, args[arg], locked[package])


def test_base_is_pinned_and_matches_airflow_and_python() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, flags=re.M)
    assert base is not None
    assert base.group(1) == f"apache/airflow:{_locked()['apache-airflow']}-python3.11"
    assert re.findall(r"^USER (\S+)$", text, flags=re.M)[-1] == "airflow"
