"""Service configuration from the environment: clear errors naming the variable."""

from __future__ import annotations

import pytest

from starling.runtime.config import ConfigError, RuntimeSettings, load_settings
from starling.services.notifier import NotifierSettings

pytestmark = pytest.mark.unit


def test_defaults_and_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_SERVICE", "trends")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b:9092")
    settings = RuntimeSettings.from_env()
    assert settings.group_id == "starling-trends"
    consumer = settings.consumer_config()
    assert consumer["enable.auto.commit"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    producer = settings.producer_config()
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"


def test_scram_over_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    ca = Path(str(tmp_path)) / "ca.crt"
    ca.write_text("x")
    settings = RuntimeSettings.from_env(
        starling_service="ingestion",
        kafka_bootstrap_servers="b:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="starling-ingestion",
        kafka_sasl_password="secret",
        kafka_ssl_ca_location=str(ca),
    )
    common = settings.kafka_common()
    assert common["sasl.mechanism"] == "SCRAM-SHA-512"
    assert common["sasl.password"] == "secret"
    assert common["ssl.ca.location"] == str(ca)
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "b:1"}, "STARLING_SERVICE"),
        ({"STARLING_SERVICE": "gatewey", "KAFKA_BOOTSTRAP_SERVERS": "b:1"}, "STARLING_SERVICE"),
        ({"STARLING_SERVICE": "trends"}, "KAFKA_BOOTSTRAP_SERVERS"),
        (
            {
                "STARLING_SERVICE": "trends",
                "KAFKA_BOOTSTRAP_SERVERS": "b:1",
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            },
            "KAFKA_SASL_USERNAME",
        ),
        (
            {"STARLING_SERVICE": "trends", "KAFKA_BOOTSTRAP_SERVERS": "b:1", "STORE_PORT": "x"},
            "STORE_PORT",
        ),
    ],
)
def test_bad_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key in ("STARLING_SERVICE", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        RuntimeSettings.from_env()


def test_service_settings_errors_name_the_prefixed_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STARLING_NOTIFY_FATIGUE_CAP", "0")
    with pytest.raises(ConfigError, match="STARLING_NOTIFY_FATIGUE_CAP"):
        load_settings(NotifierSettings)
