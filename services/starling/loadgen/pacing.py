"""Rate pacing for the traffic generator: a token bucket with an injectable clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """Allows `rate` units per second on average and bursts of at most `capacity`.

    Tokens accrue continuously up to `capacity`; `acquire(n)` waits until n are there
    and spends them. Capping the bucket means a stall (a GC pause, a slow broker) is not
    followed by an unbounded catch-up burst: at most `capacity` units go out at once.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0, got {rate}")
        if not capacity >= 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        # Start empty so the first second is paced like every other one.
        self._tokens = 0.0
        self._updated = clock()

    def acquire(self, units: float = 1.0) -> float:
        """Wait until `units` tokens are available and take them; returns seconds slept."""
        if units > self.capacity:
            raise ValueError(f"cannot take {units} units from a bucket of {self.capacity}")
        slept = 0.0
        while True:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # The tolerance absorbs float rounding of (elapsed * rate): without it a
            # deficit of 1e-13 tokens asks for a sleep too short to move the clock.
            if self._tokens >= units - 1e-9:
                self._tokens = max(0.0, self._tokens - units)
                return slept
            wait = (units - self._tokens) / self.rate
            self._sleep(wait)
            slept += wait
