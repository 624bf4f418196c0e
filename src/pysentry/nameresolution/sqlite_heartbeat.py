"""The ``sqlite`` resolver's heartbeat: Dapr's ticker on our row, retries, and the cleanup.

Every ``updateInterval - timeout`` the row's ``last_update`` is refreshed (Dapr's
``doRenewRegistration``); 0 rows updated means another host took the address:
:class:`RegistrationLost`, fatal, as in Dapr. Beats keep a fixed cadence just after a whole Unix
second (:func:`next_beat`). A beat that fails on a database error is tried again every
:data:`HEARTBEAT_RETRY_S` until the next one is due. Every ``cleanupInterval`` the stale rows
go. The SQL is :class:`pysentry.nameresolution.sqlite.SqliteResolver`'s.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from datetime import timedelta
from typing import Protocol

from pysentry.clock import Clock
from pysentry.nameresolution.base import ResolutionError

log = logging.getLogger("pysentry.nameresolution.sqlite")  # the resolver's lines, as they were

HEARTBEAT_RETRY_S = 0.25
"""A heartbeat that failed on a database error is tried again this soon."""
_BEAT_PHASE_S = 0.05  # heartbeats fire this long after a whole Unix second


class RegistrationLost(ResolutionError):
    """Our row was replaced or deleted by someone else (Dapr: ``Host registration lost``)."""


class Registered(Protocol):
    def heartbeat(self) -> None: ...

    def cleanup(self) -> int: ...


def next_beat(next_at: float, period: float, now: float) -> tuple[float, float]:
    """(seconds to wait, the beat after) at Unix time ``now`` for a ticker due at ``next_at``.

    Beats keep a fixed cadence (a late beat does not push the next ones, as Go's ticker) and
    start just after a whole second: ``last_update`` is whole seconds and a row is fresh
    while ``now - last_update < updateInterval``, so with a 1 s period a beat must never
    slip past a second boundary. Missed beats are skipped, not bunched.
    """
    while next_at <= now:
        next_at += period
    return next_at - now, next_at + period


async def keep_registered(
    row: Registered, *, period: timedelta, cleanup_interval: timedelta, clock: Clock
) -> None:
    """Heartbeat every ``period`` and clean up every ``cleanup_interval`` until cancelled;
    raises :class:`RegistrationLost` (fatal, as in Dapr)."""
    cleanup_every = cleanup_interval.total_seconds()
    loop = asyncio.get_running_loop()
    next_cleanup = loop.time() + cleanup_every
    next_at = math.floor(clock().timestamp()) + 1 + _BEAT_PHASE_S
    while True:
        delay, next_at = next_beat(next_at, period.total_seconds(), clock().timestamp())
        await asyncio.sleep(delay)
        await _beat(row, until=next_at, clock=clock)
        if cleanup_every > 0 and loop.time() >= next_cleanup:
            next_cleanup = loop.time() + cleanup_every
            try:
                removed = await asyncio.to_thread(row.cleanup)
                log.info("Removed %d expired rows", removed)
            except sqlite3.Error as err:
                log.warning("name resolution cleanup failed: %s", err)


async def _beat(row: Registered, *, until: float, clock: Clock) -> None:
    """One heartbeat; a database error (e.g. ``database is locked`` past the busy timeout,
    another writer stuck in a slow fsync) is retried every ``HEARTBEAT_RETRY_S`` until the
    next beat is due, so one failed write does not leave the row stale for a whole period
    (callers would get ``no host found``)."""
    while True:
        try:
            await asyncio.to_thread(row.heartbeat)
            return
        except RegistrationLost:
            log.error("Failed to update host registration: host registration lost")
            log.critical("Host registration lost")
            raise
        except sqlite3.Error as err:
            log.error("Failed to update host registration: database error: %s", err)
        if clock().timestamp() + HEARTBEAT_RETRY_S >= until:
            return
        await asyncio.sleep(HEARTBEAT_RETRY_S)
