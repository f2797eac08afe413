"""Client event time is bounded: an event further ahead of the clock than the skew
allowance (STARLING_EVENT_TIME_SKEW_S) is refused with 422 before it reaches Kafka; one
within the allowance, or in the past, goes on to the producer (unreachable here, so 503)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.tokens import TokenIssuer
from tests.unit.gateway.conftest import Client
from tests.unit.gateway.test_gateway_api import post, tweet

pytestmark = pytest.mark.unit


def at(offset_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def test_an_event_from_2099_is_refused_with_its_reason_and_field(
    make_client: Any, issuer: TokenIssuer
) -> None:
    client: Client = make_client(**issuer.gateway_settings(), ack_timeout_s=0.5)
    response = post(client, issuer, tweet(event_time="2099-01-01T00:00:00Z"))
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["reason"] == "event_time_in_future"
    assert answer["field"] == "$.event_time"
    assert "STARLING_EVENT_TIME_SKEW_S" in answer["message"]
    rejected = client.gateway.metrics.rejected.labels("event_time_in_future")._value.get()
    assert rejected == 1


@pytest.mark.parametrize(("skew", "offset_s", "refused"), [("300", 60, False), ("10", 60, True)])
def test_the_allowance_is_the_setting(
    make_client: Any,
    issuer: TokenIssuer,
    monkeypatch: pytest.MonkeyPatch,
    skew: str,
    offset_s: float,
    refused: bool,
) -> None:
    monkeypatch.setenv("STARLING_EVENT_TIME_SKEW_S", skew)
    client: Client = make_client(**issuer.gateway_settings(), ack_timeout_s=0.5)
    response = post(client, issuer, tweet(event_time=at(offset_s)))
    if refused:
        assert response.status_code == 422, response.text
    else:
        # Past the check, on to Kafka, which nothing answers here.
        assert (response.status_code, response.json()["error"]) == (503, "not_acknowledged")


def test_past_event_times_are_accepted_as_late_not_refused(
    make_client: Any, issuer: TokenIssuer
) -> None:
    client: Client = make_client(**issuer.gateway_settings(), ack_timeout_s=0.5)
    response = post(client, issuer, tweet(event_time=at(-86_400)))
    assert (response.status_code, response.json()["error"]) == (503, "not_acknowledged")
