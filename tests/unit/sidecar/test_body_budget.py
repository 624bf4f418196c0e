"""The in-flight body budget: room now is taken at once, a body that does not fit waits, a wait
that outlasts its timeout is refused, and every reservation is given back."""

from __future__ import annotations

import asyncio

import pytest

from pysentry.sidecar.limits import BodyBudget, BudgetExhausted


async def test_room_now_is_taken_and_given_back() -> None:
    budget = BodyBudget(100)
    async with budget.reserve(60, timeout_s=1), budget.reserve(40, timeout_s=1):
        assert budget.in_use == 100
    assert budget.in_use == 0


async def test_a_body_that_does_not_fit_waits_for_room() -> None:
    budget = BodyBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with budget.reserve(80, timeout_s=5):
            order.append("big")
            await release.wait()

    async def call(name: str, size: int) -> None:
        async with budget.reserve(size, timeout_s=5):
            order.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    first = asyncio.create_task(call("first", 50))  # does not fit: waits
    await asyncio.sleep(0.01)
    second = asyncio.create_task(call("second", 10))  # fits: goes ahead of the waiting one
    await asyncio.wait_for(second, 5)
    assert order == ["big", "second"] and budget.in_use == 80
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, first), 5)
    assert order == ["big", "second", "first"]
    assert budget.in_use == 0


async def test_a_wait_past_the_timeout_is_refused_and_leaves_nothing_held() -> None:
    budget = BodyBudget(100)
    async with budget.reserve(100, timeout_s=1):
        with pytest.raises(BudgetExhausted, match=r"^100 bytes of request bodies are in flight"):
            async with budget.reserve(1, timeout_s=0.05):
                pass
        assert budget.in_use == 100
    assert budget.in_use == 0
    async with budget.reserve(100, timeout_s=0.05):  # the refused waiter left no trace
        assert budget.in_use == 100
