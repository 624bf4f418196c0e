"""A byte budget for request bodies held in memory by calls in flight.

``--max-body-size`` caps one body; :class:`BodyBudget` caps their sum, so that many concurrent
large calls wait for each other instead of growing the sidecar without bound. A call reserves
its body size (the Content-Length, or the cap when the length is not known up front) before the
body is read, and gives it back when the call has been answered. A single body larger than the
whole budget (possible only with ``--max-body-size 0``, no cap) runs alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: The budget is this many maximum-size bodies (each costs several copies on its way out),
#: and never less than :data:`MIN_BUDGET`.
BODIES_IN_FLIGHT = 2
MIN_BUDGET = 32 << 20


def budget_for(max_body_size: int) -> int:
    return max(BODIES_IN_FLIGHT * max_body_size, MIN_BUDGET)


class BudgetExhausted(Exception):
    """No room for the body within the wait allowed."""


class BodyBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiting = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, size: int, *, timeout_s: float) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the body of the block."""
        if size <= 0:
            yield
            return
        if not self._waiting and self._fits(size):
            self.in_use += size  # the common case: room now, no task, lock or timer needed
        else:
            await self._wait(size, timeout_s)
        try:
            yield
        finally:
            self.in_use -= size
            if self._waiting:
                async with self._changed:
                    self._changed.notify_all()

    async def _wait(self, size: int, timeout_s: float) -> None:
        self._waiting += 1
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._fits(size)), timeout=timeout_s
                )
                self.in_use += size
        except TimeoutError as err:
            raise BudgetExhausted(
                f"{self.in_use} bytes of request bodies are in flight (budget "
                f"{self.capacity}); waited {timeout_s:g}s"
            ) from err
        finally:
            self._waiting -= 1

    def _fits(self, size: int) -> bool:
        return self.in_use == 0 or self.in_use + size <= self.capacity
