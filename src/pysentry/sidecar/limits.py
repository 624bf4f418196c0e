"""A byte budget for request bodies held in memory by calls in flight.

``--max-body-size`` caps one body; :class:`BodyBudget` caps their sum, so that many concurrent
large calls wait for each other instead of growing the sidecar without bound. A call reserves
its body size (the Content-Length, or the cap when the length is not known up front) before the
body is read, and gives it back when the call has been answered. A single body larger than the
whole budget (possible only with ``--max-body-size 0``, no cap) runs alone.
"""

from __future__ import annotations

import asyncio

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

    def reserve(self, size: int, *, timeout_s: float) -> _Reservation:
        """``async with budget.reserve(size, timeout_s=...)``: hold ``size`` bytes of the budget
        for the body of the block."""
        return _Reservation(self, size, timeout_s)

    async def _release(self, size: int) -> None:
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


class _Reservation:
    """The context manager of :meth:`BodyBudget.reserve` (a class: cheaper per call than a
    generator-based one)."""

    __slots__ = ("_budget", "_size", "_timeout_s")

    def __init__(self, budget: BodyBudget, size: int, timeout_s: float) -> None:
        self._budget = budget
        self._size = size
        self._timeout_s = timeout_s

    async def __aenter__(self) -> None:
        budget, size = self._budget, self._size
        if size <= 0:
            return
        if not budget._waiting and budget._fits(size):
            budget.in_use += size  # the common case: room now, no task, lock or timer needed
        else:
            await budget._wait(size, self._timeout_s)

    async def __aexit__(self, *exc: object) -> None:
        if self._size > 0:
            await self._budget._release(self._size)
