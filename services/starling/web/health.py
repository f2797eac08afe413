"""Probes of a service whose answers wait on an acknowledging producer."""

from __future__ import annotations

import asyncio

from starling.runtime.metrics import HealthState
from starling.web.producer import AckingProducer


class ProducerHealth(HealthState):
    """Alive while the event loop keeps beating and the producer has not failed fatally."""

    def __init__(self, stall_after_s: float, producer: AckingProducer) -> None:
        super().__init__(stall_after_s)
        self._producer = producer

    def alive(self) -> bool:
        return super().alive() and self._producer.fatal_error is None

    async def keep_beating(self) -> None:
        """Run on the event loop until cancelled: liveness means the loop runs, and a
        blocked loop stops beating."""
        while True:
            self.beat()
            await asyncio.sleep(1.0)
