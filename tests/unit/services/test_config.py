"""Service configuration from the environment: clear errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from starling.runtime.config import ConfigError, RuntimeSettings, load_settings
from starling.services.notifier import NotifierSettings
from starling.store.client import connect

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


_SASL = {
    "STARLING_SERVICE": "timelines",
    "KAFKA_BOOTSTRAP_SERVERS": "b:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_USERNAME": "starling-timelines",
}


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_passwords_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The chart sets only the *_FILE paths; the values come from the mounted Secrets (one
    trailing newline dropped, as `kubectl create secret --from-file` often keeps one)."""
    (tmp_path / "kafka").write_text("kafka-secret\n")
    (tmp_path / "store").write_text("store-secret")
    _set(monkeypatch, _SASL)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "kafka"))
    monkeypatch.setenv("STORE_PASSWORD_FILE", str(tmp_path / "store"))
    settings = RuntimeSettings.from_env()
    assert settings.kafka_common()["sasl.password"] == "kafka-secret"
    assert settings.redis_kwargs()["password"] == "store-secret"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize("variable", ["KAFKA_SASL_PASSWORD_FILE", "STORE_PASSWORD_FILE"])
def test_a_missing_secret_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    _set(monkeypatch, {**_SASL, "KAFKA_SASL_PASSWORD": "x"})
    if variable == "KAFKA_SASL_PASSWORD_FILE":
        monkeypatch.delenv("KAFKA_SASL_PASSWORD")
    monkeypatch.setenv(variable, str(tmp_path / "absent"))
    with pytest.raises(ConfigError) as error:
        RuntimeSettings.from_env()
    assert f"{variable}={tmp_path / 'absent'}: no such file" in str(error.value)


def test_an_empty_secret_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "store").write_text("\n")
    _set(monkeypatch, {**_SASL, "KAFKA_SASL_PASSWORD": "x"})
    monkeypatch.setenv("STORE_PASSWORD_FILE", str(tmp_path / "store"))
    with pytest.raises(ConfigError, match=r"STORE_PASSWORD_FILE=.*: the file is empty"):
        RuntimeSettings.from_env()


@pytest.mark.parametrize("name", ["KAFKA_SASL_PASSWORD", "STORE_PASSWORD"])
def test_a_password_and_its_file_together_are_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    (tmp_path / "secret").write_text("from-file")
    _set(monkeypatch, {**_SASL, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "secret")})
    monkeypatch.setenv(name, "from-env")
    monkeypatch.setenv(f"{name}_FILE", str(tmp_path / "secret"))
    with pytest.raises(ConfigError) as error:
        RuntimeSettings.from_env()
    assert f"both {name} and {name}_FILE are set" in str(error.value)
    assert "from-file" not in str(error.value) and "from-env" not in str(error.value)


def test_sasl_without_any_password_names_the_file_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, _SASL)
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        RuntimeSettings.from_env()


def test_store_tls_verifies_chain_and_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    _set(monkeypatch, {"STARLING_SERVICE": "trends", "KAFKA_BOOTSTRAP_SERVERS": "b:1"})
    monkeypatch.setenv("STORE_TLS", "true")
    monkeypatch.setenv("STORE_CA_FILE", str(ca))
    kwargs = RuntimeSettings.from_env().redis_kwargs()
    assert (kwargs["tls"], kwargs["ca_file"]) == (True, str(ca))
    client = connect(**kwargs)
    connection_kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert connection_kwargs["ssl_ca_certs"] == str(ca)
    assert connection_kwargs["ssl_check_hostname"] is True
    assert connection_kwargs["ssl_cert_reqs"] == "required"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STORE_CA_FILE": "{ca}"}, "STORE_CA_FILE is set but STORE_TLS is not true"),
        ({"STORE_TLS": "true", "STORE_CA_FILE": "{absent}"}, "STORE_CA_FILE=.*: no such file"),
    ],
)
def test_store_tls_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    (tmp_path / "ca.crt").write_text("x")
    _set(monkeypatch, {"STARLING_SERVICE": "trends", "KAFKA_BOOTSTRAP_SERVERS": "b:1"})
    for name, value in env.items():
        monkeypatch.setenv(
            name, value.format(ca=tmp_path / "ca.crt", absent=tmp_path / "absent.crt")
        )
    with pytest.raises(ConfigError, match=message):
        RuntimeSettings.from_env()
