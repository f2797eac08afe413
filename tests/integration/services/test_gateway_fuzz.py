"""Property-based fuzzing of the gateway from its OpenAPI document (schemathesis): generated
requests, valid and invalid, against the real gateway on a real broker and store, signed
in with real tokens; no 5xx, and every response matches the document.

A request is signed in as the user it names (the path's user, or the event's actor) so
the fuzzer reaches the handlers behind authentication, not only the 401 in front of them;
every fifth goes without a token. The SSE stream never ends by itself, so it is left to
the stream tests (tests/integration/services/test_gateway.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from starling.gateway.app import openapi_document
from tests.integration.services.gateway_server import RunningGateway, start_gateway
from tests.integration.services.helpers import Deployment, new_prefix
from tests.tokens import TokenIssuer

if TYPE_CHECKING:
    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

schema = schemathesis.openapi.from_dict(json.loads(openapi_document())).exclude(
    path_regex=r"/stream$"
)
STATUSES: list[int] = []
ACTOR_FIELDS = ("author_id", "actor_id", "user_id")
MAX_ID = 2**63 - 1
DEFAULT_USER = 7


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.start() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    kafka: KafkaCluster, redis_server: RedisServer, issuer: TokenIssuer
) -> Iterator[RunningGateway]:
    deployment = Deployment(kafka, new_prefix(), redis_server.host, redis_server.port)
    deployment.create_topics()
    with start_gateway(deployment, issuer, ack_timeout_s=5.0) as running:
        yield running
    server_errors = sum(status >= 500 for status in STATUSES)
    print(f"gateway fuzz: {len(STATUSES)} generated requests, {server_errors} server errors")


def _user_id(value: Any) -> int | None:
    text = str(value)
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID:
        return int(text)
    return None


def subject_for(case: schemathesis.Case) -> int:
    """The user the request acts for, when it names a valid one."""
    named = _user_id((case.path_parameters or {}).get("user_id"))
    if named is not None:
        return named
    if isinstance(case.body, dict):
        for field in ACTOR_FIELDS:
            actor = _user_id(case.body.get(field))
            if actor is not None:
                return actor
    return DEFAULT_USER


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_document(
    case: schemathesis.Case, gateway: RunningGateway, issuer: TokenIssuer
) -> None:
    signed_in = len(STATUSES) % 5 != 0
    headers = {"Authorization": f"Bearer {issuer.mint(subject_for(case))}"} if signed_in else {}
    response = case.call(base_url=gateway.url, headers=headers)
    STATUSES.append(response.status_code)
    # The broker, store and issuer are up: no answer may be a server error.
    assert response.status_code < 500, response.text
    if case.operation.path == "/v1/events" and response.status_code == 400:
        # Schema-valid events can still break a rule relating two fields (the operation's
        # description lists them; JSON Schema cannot say them), so a 400 is not counted as
        # valid data rejected; every 400 must still say what is wrong and where.
        refusal = response.json()
        assert refusal["error"] in {"invalid", "unknown_version", "malformed"}, refusal
        assert refusal["field"] or refusal["error"] == "malformed", refusal
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        return
    if case.operation.path == "/v1/events" and response.status_code == 422:
        # A 422 is one of the documented refusals, each naming its field: an event time
        # beyond the skew allowance (relative to the clock, which JSON Schema cannot say),
        # or a type outside the ClientEvent discriminator, which schemathesis at times
        # still labels as valid data (seen with `"type": {}`).
        refusal = response.json()
        expected = {"event_time_in_future": "$.event_time", "unknown_type": "$.type"}
        assert expected.get(refusal["reason"]) == refusal["field"], (refusal, case.body)
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        return
    case.validate_response(response)
