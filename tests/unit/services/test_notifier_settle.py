"""The notifier's settle delay (issue 12, defect 10) is a setting with a sane default and
a clear error naming the variable when it is out of range."""

from __future__ import annotations

import pytest

from starling.runtime.config import ConfigError, load_settings
from starling.services.notifier import DEFAULT_SETTLE_MS, NotifierSettings

pytestmark = pytest.mark.unit


def test_settle_delay_defaults_to_a_few_seconds_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STARLING_NOTIFY_SETTLE_MS", raising=False)
    assert load_settings(NotifierSettings).settle_ms == DEFAULT_SETTLE_MS
    assert 1000 <= DEFAULT_SETTLE_MS <= 10_000
    monkeypatch.setenv("STARLING_NOTIFY_SETTLE_MS", "0")
    assert load_settings(NotifierSettings).settle_ms == 0


@pytest.mark.parametrize("value", ["-1", "600000", "soon"])
def test_settle_delay_out_of_range_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("STARLING_NOTIFY_SETTLE_MS", value)
    with pytest.raises(ConfigError, match="STARLING_NOTIFY_SETTLE_MS"):
        load_settings(NotifierSettings)
