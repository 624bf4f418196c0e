"""The ``sqlite`` resolver's lookups on an event loop: an expired address list is re-read in a
worker thread while the old one is served, so a locked database never stalls the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysentry.nameresolution import (
    NO_HOST,
    Registration,
    ResolutionError,
    SqliteResolver,
    SqliteSettings,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _refreshed(r: SqliteResolver, app_id: str, want: set[str]) -> set[str]:
    """Addresses seen by lookups until they are ``want`` (at most 5 s of real time)."""
    deadline = time.monotonic() + 5
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = {r.resolve(app_id, "default") for _ in range(4)}
        if seen == want:
            break
        await asyncio.sleep(0.01)
    return seen


async def test_expired_list_is_served_while_the_new_one_is_read(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    settings = SqliteSettings(db, timedelta(seconds=5), disable_wal=True)
    one, two, caller = (SqliteResolver(settings, clock=clock) for _ in range(3))
    try:
        one.register(Registration("b", "default", "127.0.0.1:1001"))
        assert caller.resolve("b", "default") == "127.0.0.1:1001"  # first lookup: read now
        two.register(Registration("b", "default", "127.0.0.1:1002"))
        clock.now += timedelta(seconds=2)  # the cached list expired; both rows are fresh
        locker = sqlite3.connect(str(db), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another sidecar holds the file: reads must wait
        try:
            started = time.monotonic()
            assert caller.resolve("b", "default") == "127.0.0.1:1001"  # the old list, now
            assert time.monotonic() - started < 0.2
        finally:
            locker.execute("COMMIT")
            locker.close()
        assert await _refreshed(caller, "b", {"127.0.0.1:1001", "127.0.0.1:1002"}) == {
            "127.0.0.1:1001",
            "127.0.0.1:1002",
        }
    finally:
        for r in (one, two, caller):
            r.close()


async def test_a_refresh_that_finds_no_host_ends_in_no_host(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = SqliteSettings(tmp_path / "nr.db", timedelta(seconds=5))
    one, caller = SqliteResolver(settings, clock=clock), SqliteResolver(settings, clock=clock)
    try:
        one.register(Registration("b", "default", "127.0.0.1:1001"))
        assert caller.resolve("b", "default") == "127.0.0.1:1001"
        one.unregister()
        clock.now += timedelta(seconds=2)
        assert caller.resolve("b", "default") == "127.0.0.1:1001"  # served while re-read
        deadline = time.monotonic() + 5
        with pytest.raises(ResolutionError, match=NO_HOST):
            while time.monotonic() < deadline:
                caller.resolve("b", "default")
                await asyncio.sleep(0.01)
    finally:
        one.close()
        caller.close()


def test_without_a_loop_an_expired_list_is_read_at_once(tmp_path: Path) -> None:
    """The CLI resolves without an event loop: it reads the database itself."""
    clock = FakeClock()
    settings = SqliteSettings(tmp_path / "nr.db", timedelta(seconds=5))
    one, two, caller = (SqliteResolver(settings, clock=clock) for _ in range(3))
    try:
        one.register(Registration("b", "default", "127.0.0.1:1001"))
        assert caller.resolve("b", "default") == "127.0.0.1:1001"
        two.register(Registration("b", "default", "127.0.0.1:1002"))
        clock.now += timedelta(seconds=2)
        seen = {caller.resolve("b", "default") for _ in range(4)}
        assert seen == {"127.0.0.1:1001", "127.0.0.1:1002"}
    finally:
        for r in (one, two, caller):
            r.close()
