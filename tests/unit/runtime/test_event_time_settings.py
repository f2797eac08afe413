"""The event-time allowance is one setting, checked at start like every other."""

from __future__ import annotations

import pytest

from starling.runtime.config import ConfigError, load_settings
from starling.runtime.eventtime import EventTimeSettings

pytestmark = pytest.mark.unit


def test_default_allowance_is_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARLING_EVENT_TIME_SKEW_S", raising=False)
    assert load_settings(EventTimeSettings).event_time_skew_s == 300


@pytest.mark.parametrize("value", ["-1", "7200", "soon"])
def test_a_bad_allowance_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("STARLING_EVENT_TIME_SKEW_S", value)
    with pytest.raises(ConfigError, match="STARLING_EVENT_TIME_SKEW_S"):
        load_settings(EventTimeSettings)
