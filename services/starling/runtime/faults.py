"""Which faults are worth waiting out, and the retry policy for them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis.exceptions
from confluent_kafka import KafkaException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from starling.runtime.handler import TransientError

T = TypeVar("T")

log = logging.getLogger("starling.runtime")


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientError | OSError | TimeoutError):
        return True
    if isinstance(error, redis.exceptions.RedisError):
        # Connection loss, timeouts, a restarted server still loading its AOF or missing
        # our scripts (NOSCRIPT), OOM, READONLY: all pass. Only client-side data errors are
        # the record's fault. An error that does not pass exhausts the retry budget and
        # stops the service, which is the safe way to fail: nothing is skipped.
        return not isinstance(error, redis.exceptions.DataError)
    if isinstance(error, KafkaException):
        kafka_error = error.args[0] if error.args else None
        return bool(kafka_error is not None and kafka_error.retriable())
    return False


def retrying(
    budget_s: float,
    should_stop: Callable[[], bool],
    on_retry: Callable[[BaseException], None] | None = None,
    *,
    first_wait_s: float = 0.05,
    max_wait_s: float = 5.0,
) -> Retrying:
    """Exponential backoff (50 ms doubling to 5 s) on transient faults for `budget_s`
    seconds, giving up early when the service is shutting down; the last error is raised."""

    class stop_when_stopping(stop_base):  # noqa: N801 - named like tenacity's stops
        def __call__(self, retry_state: RetryCallState) -> bool:
            return should_stop()

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            log.warning(
                "transient fault (attempt %d, retrying in %.2f s): %s",
                state.attempt_number,
                state.upcoming_sleep,
                error,
            )
            if on_retry is not None:
                on_retry(error)

    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=first_wait_s, min=first_wait_s, max=max_wait_s),
        stop=stop_after_delay(budget_s) | stop_when_stopping(),
        before_sleep=before_sleep,
        reraise=True,
    )


def call_with_retries(
    function: Callable[[], T],
    budget_s: float,
    should_stop: Callable[[], bool],
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`function()` under the `retrying` policy. The first attempt runs outside tenacity:
    almost every call succeeds at once, and setting tenacity up costs ~0.2 ms (the
    runtime calls this once or twice per batch). After a transient failure tenacity takes
    over, starting from that failure: same log, `on_retry`, backoff and budget."""
    started = time.monotonic()
    try:
        return function()
    except Exception as error:
        if not is_transient(error):
            raise
        first_failure: list[BaseException] = [error]

    def attempt() -> T:
        if first_failure:
            raise first_failure.pop()  # tenacity's attempt 1 is the one that just failed
        return function()

    remaining_s = max(0.0, budget_s - (time.monotonic() - started))
    result: Any = retrying(remaining_s, should_stop, on_retry)(attempt)
    return result  # type: ignore[no-any-return]
