"""SQLite name resolution: register, heartbeat, stale rows skipped, round-robin, unregister."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.sidecar.invocation import InvocationError
from pysentry.sidecar.resolver import (
    Registration,
    SqliteResolver,
    SqliteSettings,
    default_db_path,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _resolver(path: Path, clock: FakeClock) -> SqliteResolver:
    return SqliteResolver(SqliteSettings(path, timedelta(seconds=5)), clock=clock)


def test_register_resolve_and_round_robin(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    one, two, caller = _resolver(db, clock), _resolver(db, clock), _resolver(db, clock)
    one.register(Registration("b", "default", "127.0.0.1:1001", pid=1))
    two.register(Registration("b", "default", "127.0.0.1:1002", pid=2))
    seen = {caller.resolve("b", "default") for _ in range(4)}
    assert seen == {"127.0.0.1:1001", "127.0.0.1:1002"}
    with pytest.raises(InvocationError, match="failed to resolve address"):
        caller.resolve("b", "other-ns")


def test_stale_rows_are_skipped_and_heartbeat_refreshes(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    live, dead, caller = _resolver(db, clock), _resolver(db, clock), _resolver(db, clock)
    live.register(Registration("b", "default", "127.0.0.1:1001"))
    dead.register(Registration("b", "default", "127.0.0.1:1002"))
    clock.now += timedelta(seconds=10)
    live.heartbeat()
    clock.now += timedelta(seconds=6)  # dead: 16 s old (> 3 x 5 s); live: 6 s
    assert caller.addresses("b", "default") == ("127.0.0.1:1001",)
    assert [r.address for r in caller.list_registrations()] == ["127.0.0.1:1001"]
    assert len(caller.list_registrations(include_stale=True)) == 2


def test_unregister_removes_row(tmp_path: Path) -> None:
    clock = FakeClock()
    r = _resolver(tmp_path / "nr.db", clock)
    r.register(
        Registration("b", "default", "127.0.0.1:1001", spiffe_id="spiffe://public/ns/default/b")
    )
    r.update_identity("spiffe://public/ns/default/b", clock.now + timedelta(hours=1))
    (reg,) = r.list_registrations()
    assert reg.cert_expiry_at == clock.now + timedelta(hours=1)
    r.unregister()
    assert r.list_registrations(include_stale=True) == ()


def test_settings_from_metadata_and_default_path(tmp_path: Path) -> None:
    s = SqliteSettings.from_metadata(
        {
            "connectionString": f"file:{tmp_path}/x.db?_pragma=busy_timeout(500)",
            "updateInterval": "2s",
        }
    )
    assert s.path == tmp_path / "x.db" and s.update_interval == timedelta(seconds=2)
    assert default_db_path({"HOME": str(tmp_path)}) == tmp_path / ".dapr" / "nr.db"
    assert SqliteSettings.from_metadata({}, env={"HOME": "/h"}).path == Path("/h/.dapr/nr.db")
    with pytest.raises(ConfigError, match="tableName"):
        SqliteSettings.from_metadata({"tableName": "x; drop table y"})


def test_cleanup_deletes_rows_of_crashed_sidecars(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    crashed, live = _resolver(db, clock), _resolver(db, clock)
    crashed.register(Registration("b", "default", "127.0.0.1:1001"))
    clock.now += timedelta(hours=2)
    live.register(Registration("b", "default", "127.0.0.1:1002"))
    assert live.cleanup() == 1
    assert [r.address for r in live.list_registrations(include_stale=True)] == ["127.0.0.1:1002"]


def test_lookup_does_not_wait_behind_a_blocked_heartbeat(tmp_path: Path) -> None:
    """Lookups run on the event loop: a heartbeat stuck on another sidecar's write lock (in its
    worker thread) must not hold them up."""
    clock = FakeClock()
    db = tmp_path / "nr.db"
    r = _resolver(db, clock)
    r.register(Registration("b", "default", "127.0.0.1:1001"))
    other = sqlite3.connect(str(db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another sidecar holds the write lock
    beat = threading.Thread(target=r.heartbeat)
    beat.start()
    try:
        time.sleep(0.2)  # the heartbeat now waits in SQLite's busy handler (up to 5 s)
        started = time.monotonic()
        assert r.resolve("b", "default") == "127.0.0.1:1001"
        assert time.monotonic() - started < 1.0
    finally:
        other.execute("COMMIT")
        beat.join(10)
        other.close()
        r.close()
    assert not beat.is_alive()
