"""Load shedding in front of the signer: a request starts signing in time, or is refused at once.

A request may wait to start signing until its ``start_by`` time: ``arrived + max_wait``, or its
client's deadline (``grpc-timeout``) minus a margin for the answer's way back, whichever is first.
``arrived`` is when the server read its HTTP/2 headers, so time spent behind other work on the
event loop counts too. :meth:`SignQueue.submit` refuses with :class:`Overloaded` (the server
answers ``RESOURCE_EXHAUSTED``):

- at once, when ``start_by`` has passed, the queue is full, or the queue ahead of the request is
  predicted to take longer than it may wait (its length x the measured time between two starts);
- when its turn comes, or its ``start_by`` passes, while it is still queued.

Signing runs on the event loop (one issuance is well under a millisecond). So that reading
sockets, shedding and answering go on during a storm, at most ``concurrency`` requests start per
turn of the event loop, and at most ``concurrency`` run at once (a validator may await). A request
whose client has gone (its handler task was cancelled) leaves the queue without being signed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TypeVar

from pysentry.config import format_duration

T = TypeVar("T")
Monotonic = Callable[[], float]

DEFAULT_MAX_WAIT_S = 1.0
"""Longest a request waits to start signing. A sidecar gives up an attempt after 3 s, which also
pay for its TLS handshake and for any time Sentry's process waits for a CPU. (500 ms was tried:
it sheds more, and under CPU contention the extra sheds cost more than the shorter wait saves.)"""
DEADLINE_MARGIN_S = 0.25
"""Kept free before a client's deadline: signing and the way back take this long at worst."""
MAX_QUEUED = 4096
"""Hard bound on queued requests, whatever the predictions say (memory stays bounded)."""
PRIOR_INTERVAL_S = 0.001
"""Assumed time between two starts until one is measured (one issuance is about 0.7 ms)."""
_RATE_WINDOW_S = 0.1
_RATE_WEIGHT = 0.3


class Shed(StrEnum):
    """Why a request was refused (the ``reason`` of :class:`Overloaded`)."""

    WAITED = "waited"
    DEADLINE = "deadline"
    QUEUE_FULL = "queue_full"


class Overloaded(Exception):
    """The request cannot start signing in time; ``message`` is what the client reads."""

    def __init__(self, reason: Shed, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Ticket:
    """When a request arrived and by when it must start signing (monotonic seconds)."""

    arrived: float
    start_by: float
    bound_by_deadline: bool


@dataclass(slots=True)
class _Waiter:
    slot: asyncio.Future[None]
    ticket: Ticket


@dataclass
class SignQueue:
    """``concurrency`` signing slots and a FIFO queue bounded in time and in length."""

    concurrency: int
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_queued: int = MAX_QUEUED
    clock: Monotonic = time.monotonic
    _pending: deque[_Waiter] = field(default_factory=deque, init=False)
    _waiting: int = field(default=0, init=False)
    _running: int = field(default=0, init=False)
    _started_this_turn: int = field(default=0, init=False)
    _interval_s: float = field(default=PRIOR_INTERVAL_S, init=False)
    _window_start: float | None = field(default=None, init=False)
    _window_starts: int = field(default=0, init=False)
    shed: dict[Shed, int] = field(default_factory=lambda: dict.fromkeys(Shed, 0), init=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency {self.concurrency!r}: must be at least 1")

    @property
    def queued(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def ticket(self, arrived: float, deadline_remaining_s: float | None) -> Ticket:
        """``deadline_remaining_s``: the client's timeout as the server measures it on arrival."""
        start_by = arrived + self.max_wait_s
        by_deadline = False
        if deadline_remaining_s is not None:
            latest = arrived + deadline_remaining_s - DEADLINE_MARGIN_S
            if latest < start_by:
                start_by, by_deadline = latest, True
        return Ticket(arrived, start_by, by_deadline)

    def check(self, ticket: Ticket) -> None:
        """Refuse now if the request has waited as long as it may, or would before its turn."""
        now = self.clock()
        if now >= ticket.start_by:
            raise self._refuse(self._reason(ticket))
        if self._waiting >= self.max_queued:
            raise self._refuse(Shed.QUEUE_FULL)
        backlog = self._waiting + self._running - self.concurrency + 1
        if backlog > 0 and now + backlog * self._interval_s > ticket.start_by:
            raise self._refuse(self._reason(ticket))

    async def submit(self, run: Callable[[], Awaitable[T]], ticket: Ticket) -> T:
        """``await run()`` in a slot, or raise :class:`Overloaded` as soon as that is known."""
        self.check(ticket)
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Waiter(slot, ticket))
        self._hand_over()
        if not slot.done():
            try:
                async with asyncio.timeout(max(0.0, ticket.start_by - self.clock())):
                    await slot  # raises Overloaded when its time ran out in the queue
            except TimeoutError:
                self._leave(slot)
                raise self._refuse(self._reason(ticket)) from None
            except asyncio.CancelledError:  # the client has gone
                self._leave(slot)
                raise
        slot.result()  # Overloaded, when it was refused on the spot
        try:
            return await run()
        finally:
            self._release()

    def _enqueue(self, waiter: _Waiter) -> None:
        if len(self._pending) > 2 * self._waiting + 64:  # drop the entries of those who left
            self._pending = deque(w for w in self._pending if not w.slot.done())
        self._pending.append(waiter)
        self._waiting += 1

    def _leave(self, slot: asyncio.Future[None]) -> None:
        """The waiter stops waiting: give back its slot if it got one, else its queue place."""
        if slot.cancelled() or not slot.done():
            slot.cancel()
            self._waiting -= 1  # still in the deque: skipped when its turn comes
        elif slot.exception() is None:
            self._release()  # handed a slot, but it left before using it

    def _hand_over(self) -> None:
        while (
            self._pending
            and self._running < self.concurrency
            and self._started_this_turn < self.concurrency
        ):
            waiter = self._pending.popleft()
            if waiter.slot.done():  # it has left (timed out, or its client has gone)
                continue
            self._waiting -= 1
            now = self.clock()
            if now > waiter.ticket.start_by:
                waiter.slot.set_exception(self._refuse(self._reason(waiter.ticket)))
                continue
            self._note_start(now)
            self._running += 1
            if not self._started_this_turn:
                asyncio.get_running_loop().call_soon(self._new_turn)
            self._started_this_turn += 1
            waiter.slot.set_result(None)

    def _new_turn(self) -> None:
        self._started_this_turn = 0
        self._hand_over()

    def _release(self) -> None:
        self._running -= 1
        self._hand_over()

    def _note_start(self, now: float) -> None:
        """Measure the drain rate: starts per window of time during which requests queued."""
        if self._window_start is None:
            self._window_start, self._window_starts = now, 0
        else:
            self._window_starts += 1
            elapsed = now - self._window_start
            if elapsed >= _RATE_WINDOW_S:
                sample = elapsed / self._window_starts
                self._interval_s += _RATE_WEIGHT * (sample - self._interval_s)
                self._window_start, self._window_starts = now, 0
        if not self._waiting:
            self._window_start = None  # the queue ran dry: the next gap is idle time

    @staticmethod
    def _reason(ticket: Ticket) -> Shed:
        return Shed.DEADLINE if ticket.bound_by_deadline else Shed.WAITED

    def _refuse(self, reason: Shed) -> Overloaded:
        self.shed[reason] += 1
        if reason is Shed.QUEUE_FULL:
            why = f"{self.max_queued} are queued"
        elif reason is Shed.DEADLINE:
            why = "signing could not start before the request's deadline"
        else:
            wait = format_duration(timedelta(seconds=self.max_wait_s))
            why = f"signing could not start within {wait}"
        return Overloaded(reason, f"too many certificate signing requests: {why}; retry later")
