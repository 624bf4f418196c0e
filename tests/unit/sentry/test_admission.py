"""SignQueue: start in time or be refused at once; FIFO slots; a bounded number of starts per turn.

The queue's clock is a fake (``Clock.now``) wherever a decision depends on time; the asyncio
timeout that sheds a queued request when its time runs out uses real (short) time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import pytest

from pysentry.sentry.admission import (
    DEADLINE_MARGIN_S,
    PRIOR_INTERVAL_S,
    Overloaded,
    Shed,
    SignQueue,
)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """An async job that waits until released, and records that it ran."""

    def __init__(self, name: str, ran: list[str]) -> None:
        self.name, self.ran, self.event = name, ran, asyncio.Event()

    async def __call__(self) -> str:
        self.ran.append(self.name)
        await self.event.wait()
        return self.name


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_ticket_takes_the_earlier_of_max_wait_and_the_clients_deadline() -> None:
    queue = SignQueue(4, max_wait_s=1.0, clock=Clock())
    assert queue.ticket(10.0, None).start_by == 11.0
    assert queue.ticket(10.0, 3.0).start_by == 11.0  # a sidecar's 3 s: max wait first
    short = queue.ticket(10.0, 0.5)
    assert short.start_by == pytest.approx(10.5 - DEADLINE_MARGIN_S)
    assert short.bound_by_deadline


def test_a_request_that_waited_too_long_is_refused_at_once() -> None:
    clock = Clock()
    queue = SignQueue(4, max_wait_s=1.0, clock=clock)
    waited = queue.ticket(clock.now - 1.0, None)
    with pytest.raises(Overloaded) as info:
        queue.check(waited)
    assert info.value.reason is Shed.WAITED
    assert info.value.message == (
        "too many certificate signing requests: signing could not start within 1s; retry later"
    )
    past_deadline = queue.ticket(clock.now - 0.1, 0.2)
    with pytest.raises(Overloaded) as info:
        queue.check(past_deadline)
    assert info.value.reason is Shed.DEADLINE
    assert info.value.message == (
        "too many certificate signing requests: signing could not start before the request's "
        "deadline; retry later"
    )
    assert queue.shed == {Shed.WAITED: 1, Shed.DEADLINE: 1, Shed.QUEUE_FULL: 0}


async def test_slots_are_handed_over_in_order() -> None:
    clock, ran = Clock(), []
    queue = SignQueue(1, max_wait_s=60.0, clock=clock)
    gates = [Gate(n, ran) for n in "abc"]
    tasks = [asyncio.create_task(queue.submit(g, queue.ticket(clock.now, None))) for g in gates]
    await settle()
    assert (ran, queue.running, queue.queued) == (["a"], 1, 2)
    for gate in gates:
        gate.event.set()
    assert await asyncio.gather(*tasks) == ["a", "b", "c"]
    assert ran == ["a", "b", "c"]
    assert (queue.running, queue.queued) == (0, 0)


async def test_a_foreseen_wait_past_start_by_is_refused_at_once() -> None:
    clock, ran = Clock(), []
    queue = SignQueue(1, max_wait_s=3.5 * PRIOR_INTERVAL_S, clock=clock)
    first = Gate("first", ran)
    tasks = [asyncio.create_task(queue.submit(first, queue.ticket(clock.now, None)))]
    tasks += [
        asyncio.create_task(queue.submit(Gate(f"q{i}", ran), queue.ticket(clock.now, None)))
        for i in range(3)
    ]
    await settle()
    assert queue.queued == 3  # 1, 2 and 3 starts ahead of them: within 3.5 intervals
    with pytest.raises(Overloaded) as info:  # 4 ahead: 4 intervals > 3.5
        await queue.submit(Gate("late", ran), queue.ticket(clock.now, None))
    assert info.value.reason is Shed.WAITED
    first.event.set()
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert "late" not in ran


async def test_the_queue_is_bounded() -> None:
    clock, ran = Clock(), []
    queue = SignQueue(1, max_wait_s=60.0, max_queued=2, clock=clock)
    queue._interval_s = 0.0  # no prediction: only the bound refuses
    gates = [Gate(str(i), ran) for i in range(3)]
    tasks = [asyncio.create_task(queue.submit(g, queue.ticket(clock.now, None))) for g in gates]
    await settle()
    with pytest.raises(Overloaded) as info:
        await queue.submit(Gate("x", ran), queue.ticket(clock.now, None))
    assert info.value.reason is Shed.QUEUE_FULL
    assert info.value.message == (
        "too many certificate signing requests: 2 are queued; retry later"
    )
    for gate in gates:
        gate.event.set()
    await asyncio.gather(*tasks)


async def test_a_request_whose_time_ran_out_in_the_queue_is_shed_not_signed() -> None:
    ran: list[str] = []
    queue = SignQueue(1, max_wait_s=0.05)  # real clock: the queue's timer must fire
    queue._interval_s = 0.0
    first = Gate("first", ran)
    running = asyncio.create_task(queue.submit(first, queue.ticket(queue.clock(), None)))
    await settle()
    with pytest.raises(Overloaded) as info:
        await queue.submit(Gate("queued", ran), queue.ticket(queue.clock(), None))
    assert info.value.reason is Shed.WAITED
    first.event.set()
    assert await running == "first"
    assert ran == ["first"]
    assert (queue.running, queue.queued) == (0, 0)


async def test_at_its_turn_a_request_past_start_by_is_shed() -> None:
    clock, ran = Clock(), []
    queue = SignQueue(1, max_wait_s=60.0, clock=clock)
    queue._interval_s = 0.0
    first = Gate("first", ran)
    running = asyncio.create_task(queue.submit(first, queue.ticket(clock.now, None)))
    queued = asyncio.create_task(queue.submit(Gate("queued", ran), queue.ticket(clock.now, 2.0)))
    await settle()
    clock.now += 2.0  # its client's deadline is near by the time the slot frees
    first.event.set()
    assert await running == "first"
    with pytest.raises(Overloaded) as info:
        await queued
    assert info.value.reason is Shed.DEADLINE
    assert ran == ["first"]


async def test_a_client_that_left_is_never_signed_and_frees_its_place() -> None:
    clock, ran = Clock(), []
    queue = SignQueue(1, max_wait_s=60.0, clock=clock)
    first, gone, after = Gate("first", ran), Gate("gone", ran), Gate("after", ran)
    running = asyncio.create_task(queue.submit(first, queue.ticket(clock.now, None)))
    leaving = asyncio.create_task(queue.submit(gone, queue.ticket(clock.now, None)))
    waiting = asyncio.create_task(queue.submit(after, queue.ticket(clock.now, None)))
    await settle()
    leaving.cancel()
    await settle()
    assert queue.queued == 1
    first.event.set()
    after.event.set()
    assert await running == "first"
    assert await waiting == "after"
    assert ran == ["first", "after"]
    assert (queue.running, queue.queued) == (0, 0)


async def test_at_most_concurrency_starts_per_turn_of_the_loop() -> None:
    clock = Clock()
    queue = SignQueue(2, max_wait_s=60.0, clock=clock)
    queue._interval_s = 0.0
    turn = 0
    starts: Counter[int] = Counter()

    async def sign() -> None:
        starts[turn] += 1

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    counter = asyncio.create_task(count_turns())
    await asyncio.gather(*(queue.submit(sign, queue.ticket(clock.now, None)) for _ in range(7)))
    counter.cancel()
    assert sum(starts.values()) == 7
    assert max(starts.values()) <= 2, starts
