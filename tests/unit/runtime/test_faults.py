"""The retry policy's fast path: one plain call when it succeeds, tenacity after a
transient failure, with the same accounting as before."""

from __future__ import annotations

import pytest

from starling.runtime.faults import call_with_retries
from starling.runtime.handler import TransientError

pytestmark = pytest.mark.unit


def test_success_at_once_is_one_call_and_no_retry() -> None:
    calls: list[int] = []
    retries: list[BaseException] = []
    assert call_with_retries(lambda: calls.append(1) or "ok", 5.0, lambda: False, retries.append)
    assert calls == [1]
    assert retries == []


def test_a_transient_failure_is_retried_from_the_first_attempt_on() -> None:
    outcomes: list[BaseException | str] = [TransientError("a"), TransientError("b"), "done"]
    retries: list[BaseException] = []

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert call_with_retries(flaky, 5.0, lambda: False, retries.append) == "done"
    assert [str(error) for error in retries] == ["a", "b"]  # each failure counted once
    assert outcomes == []


def test_a_non_transient_failure_is_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        call_with_retries(broken, 5.0, lambda: False)
    assert calls == [1]


def test_shutting_down_gives_up_after_the_first_transient_failure() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError("store down")

    with pytest.raises(TransientError, match="store down"):
        call_with_retries(down, 60.0, lambda: True)
    assert calls == [1]


def test_the_budget_runs_out() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError("store down")

    with pytest.raises(TransientError):
        call_with_retries(down, 0.2, lambda: False)
    assert 2 <= len(calls) <= 5  # 50 ms, 100 ms, ... within 0.2 s
