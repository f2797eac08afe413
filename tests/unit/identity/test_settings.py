"""Identity settings: every bad value stops the service with a message naming the variable."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from starling.identity.settings import IdentitySettings
from starling.runtime.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

SEED = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed"
    path.write_bytes(SEED)
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, seed_file: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("STARLING_IDENTITY_") or name == "HTTP_PORT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("STARLING_IDENTITY_ISSUER", "https://identity.example")
    monkeypatch.setenv("STARLING_IDENTITY_SEED_FILE", str(seed_file))
    return monkeypatch


def test_defaults_are_the_documented_ones(env: pytest.MonkeyPatch) -> None:
    settings = load_settings(IdentitySettings)
    assert settings.http_port == 8081
    assert settings.audience == "starling"
    assert settings.signing_keys == ["k1"]
    assert settings.token_ttl_s == 3600
    assert (settings.signup, settings.dev_mode, settings.demo_users) == (False, False, 0)
    assert settings.trusted_proxies == []
    assert (settings.signin_per_account, settings.signin_per_address) == (5, 20)
    assert settings.signin_window_s == 300


def test_lists_are_comma_separated(env: pytest.MonkeyPatch) -> None:
    env.setenv("STARLING_IDENTITY_SIGNING_KEYS", "k2, k1")
    env.setenv("STARLING_IDENTITY_TRUSTED_PROXIES", "10.0.0.0/8,fd00::/8")
    env.setenv("HTTP_PORT", "9000")
    settings = load_settings(IdentitySettings)
    assert settings.signing_keys == ["k2", "k1"]
    assert settings.trusted_proxies == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    ]
    assert settings.http_port == 9000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("STARLING_IDENTITY_ISSUER", "identity.example", "http(s) URL"),
        ("STARLING_IDENTITY_ISSUER", "ftp://identity.example", "http(s) URL"),
        ("STARLING_IDENTITY_ISSUER", "https://identity.example/?a=1", "query or fragment"),
        ("STARLING_IDENTITY_SEED_FILE", "/nonexistent/seed", "is not a file"),
        ("STARLING_IDENTITY_SIGNING_KEYS", "k1,k1", "repeated: k1"),
        ("STARLING_IDENTITY_SIGNING_KEYS", "k1,bad/id", "'bad/id'"),
        ("STARLING_IDENTITY_SIGNING_KEYS", " , ", "at least one key id"),
        ("STARLING_IDENTITY_TRUSTED_PROXIES", "10.0.0.0/33", ""),
        ("STARLING_IDENTITY_TOKEN_TTL_S", "5", ""),
        ("STARLING_IDENTITY_SIGNIN_PER_ACCOUNT", "0", ""),
    ],
)
def test_bad_values_name_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(IdentitySettings)
    assert f"{variable}:" in str(caught.value)
    assert expected in str(caught.value)


def test_issuer_and_seed_are_required(env: pytest.MonkeyPatch) -> None:
    env.delenv("STARLING_IDENTITY_ISSUER")
    env.delenv("STARLING_IDENTITY_SEED_FILE")
    with pytest.raises(ConfigError) as caught:
        load_settings(IdentitySettings)
    assert "STARLING_IDENTITY_ISSUER: Field required" in str(caught.value)
    assert "STARLING_IDENTITY_SEED_FILE: Field required" in str(caught.value)


def test_a_short_seed_is_refused_without_quoting_it(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"secret-but-short-31-bytes-xxxxx")
    env.setenv("STARLING_IDENTITY_SEED_FILE", str(short))
    with pytest.raises(ConfigError) as caught:
        load_settings(IdentitySettings)
    assert "STARLING_IDENTITY_SEED_FILE:" in str(caught.value)
    assert "holds 31 bytes" in str(caught.value)
    assert "secret-but-short" not in str(caught.value)


def test_demo_users_need_dev_mode(env: pytest.MonkeyPatch) -> None:
    env.setenv("STARLING_IDENTITY_DEMO_USERS", "100")
    with pytest.raises(ConfigError) as caught:
        load_settings(IdentitySettings)
    assert "STARLING_IDENTITY_DEMO_USERS needs STARLING_IDENTITY_DEV_MODE=true" in str(caught.value)
    env.setenv("STARLING_IDENTITY_DEV_MODE", "true")
    assert load_settings(IdentitySettings).demo_users == 100


def test_starling_run_identity_exits_2_naming_the_variable(seed_file: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KAFKA_", "STORE_", "STARLING_"))
    }
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "STARLING_IDENTITY_ISSUER": "not a url",
            "STARLING_IDENTITY_SEED_FILE": str(seed_file),
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "starling.run_cli", "identity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "STARLING_IDENTITY_ISSUER: must be an http(s) URL" in result.stderr
