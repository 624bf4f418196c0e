"""The ``sqlite`` resolver: Dapr's schema and migrations, freshness, heartbeat, side table."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.nameresolution import (
    NO_HOST,
    Registration,
    RegistrationLost,
    ResolutionError,
    SqliteResolver,
    SqliteSettings,
    default_db_path,
    from_spec,
)
from pysentry.sidecar.invocation import InvocationError
from pysentry.sidecar.resolver import SqliteResolver as SidecarSqliteResolver


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _resolver(path: Path, clock: FakeClock) -> SqliteResolver:
    return SqliteResolver(SqliteSettings(path, timedelta(seconds=5)), clock=clock)


def _schema(db: Path) -> dict[str, str]:
    con = sqlite3.connect(str(db))
    try:
        rows = con.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        return {str(name): " ".join(str(sql).split()) for name, sql in rows}
    finally:
        con.close()


def test_schema_and_migration_level_are_daprs(tmp_path: Path) -> None:
    db = tmp_path / "nr.db"
    r = _resolver(db, FakeClock())
    r.register(Registration("b", "prod", "127.0.0.1:1001", pid=7, spiffe_id="spiffe://x/ns/p/b"))
    schema = _schema(db)
    assert schema["hosts"] == (
        "CREATE TABLE hosts (registration_id TEXT NOT NULL PRIMARY KEY, address TEXT NOT NULL,"
        " app_id TEXT NOT NULL, namespace TEXT NOT NULL, last_update INTEGER NOT NULL)"
    )
    assert schema["hosts_address_idx"] == "CREATE UNIQUE INDEX hosts_address_idx ON hosts (address)"
    assert "hosts_last_update_idx" in schema
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("SELECT key, value FROM metadata").fetchall() == [("nr-migrations", "1")]
        # Dapr v1.16 always writes namespace '' and last_update in Unix seconds.
        ((rid, addr, app, ns, last),) = con.execute("SELECT * FROM hosts").fetchall()
        assert (addr, app, ns, last) == ("127.0.0.1:1001", "b", "", 1767225600)
        assert rid == r.registration_id and len(rid) == 36
        side = con.execute("SELECT namespace, pid FROM hosts_pysentry").fetchall()
        assert side == [("prod", 7)]
    finally:
        con.close()
    # A second resolver on the same file does not migrate again (no "table already exists").
    again = _resolver(db, FakeClock())
    assert [x.namespace for x in again.list_registrations()] == ["prod"]


def test_rows_without_side_table_match_any_namespace(tmp_path: Path) -> None:
    """A Go daprd's row (namespace '', no side row) is found from any namespace."""
    clock = FakeClock()
    db = tmp_path / "nr.db"
    r = _resolver(db, clock)
    con = sqlite3.connect(str(db), isolation_level=None)
    con.execute(
        "REPLACE INTO hosts VALUES ('go-1', '127.0.0.1:2001', 'goapp', '', ?)",
        (int(clock.now.timestamp()),),
    )
    con.close()
    assert r.resolve("goapp", "default") == "127.0.0.1:2001"
    assert r.resolve("goapp", "prod") == "127.0.0.1:2001"
    (go,) = r.list_registrations()
    assert (go.app_id, go.namespace, go.pid) == ("goapp", "", 0)


def test_register_resolve_round_robin_and_namespaces(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    one, two, caller = _resolver(db, clock), _resolver(db, clock), _resolver(db, clock)
    one.register(Registration("b", "default", "127.0.0.1:1001", pid=1))
    two.register(Registration("b", "default", "127.0.0.1:1002", pid=2))
    seen = {caller.resolve("b", "default") for _ in range(4)}
    assert seen == {"127.0.0.1:1001", "127.0.0.1:1002"}
    with pytest.raises(ResolutionError, match=NO_HOST):
        caller.resolve("b", "other-ns")
    sidecar = SidecarSqliteResolver(SqliteSettings(db), clock=clock)
    with pytest.raises(InvocationError, match=r"^no host found with the given ID$"):
        sidecar.resolve("nobody", "default")


def test_freshness_is_update_interval_in_whole_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    live, dead, caller = _resolver(db, clock), _resolver(db, clock), _resolver(db, clock)
    live.register(Registration("b", "default", "127.0.0.1:1001"))
    dead.register(Registration("b", "default", "127.0.0.1:1002"))
    clock.now += timedelta(seconds=4, milliseconds=900)  # 4 s in Unix seconds: fresh
    assert len(caller.addresses("b", "default")) == 2
    live.heartbeat()
    clock.now += timedelta(seconds=1)  # dead: 5 s old (not < 5); live: 1 s
    assert caller.addresses("b", "default") == ("127.0.0.1:1001",)
    assert [r.address for r in caller.list_registrations()] == ["127.0.0.1:1001"]
    assert len(caller.list_registrations(include_stale=True)) == 2


def test_heartbeat_is_an_update_and_a_lost_row_is_fatal(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    mine, thief = _resolver(db, clock), _resolver(db, clock)
    mine.register(Registration("b", "default", "127.0.0.1:1001"))
    mine.heartbeat()
    thief.register(Registration("c", "default", "127.0.0.1:1001"))  # REPLACE on the address
    with pytest.raises(RegistrationLost, match="host registration lost"):
        mine.heartbeat()


def test_unregister_removes_row_and_side_row(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "nr.db"
    r = _resolver(db, clock)
    r.register(
        Registration("b", "default", "127.0.0.1:1001", spiffe_id="spiffe://public/ns/default/b")
    )
    r.update_identity("spiffe://public/ns/default/b", clock.now + timedelta(hours=1))
    (reg,) = r.list_registrations()
    assert reg.cert_expiry_at == clock.now + timedelta(hours=1)
    assert reg.spiffe_id == "spiffe://public/ns/default/b"
    r.unregister()
    assert r.list_registrations(include_stale=True) == ()
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT count(*) FROM hosts_pysentry").fetchone() == (0,)
    con.close()


def test_settings_keys_defaults_and_validation(tmp_path: Path) -> None:
    s = SqliteSettings.from_metadata(
        {
            "connectionString": f"file:{tmp_path}/x.db?_txlock=immediate",
            "updateInterval": "3s",
            "cleanupIntervalInSeconds": "60",
            "timeout": "2s",
            "busyTimeout": "100ms",
            "disableWAL": "true",
            "tableName": "h2",
            "metadataTableName": "m2",
        }
    )
    assert s.path == tmp_path / "x.db"
    assert (s.update_interval, s.cleanup_interval, s.timeout, s.busy_timeout) == (
        timedelta(seconds=3),
        timedelta(seconds=60),
        timedelta(seconds=2),
        timedelta(milliseconds=100),
    )
    assert s.disable_wal and (s.table, s.metadata_table) == ("h2", "m2")
    assert s.heartbeat_period == timedelta(seconds=1)
    assert default_db_path({"HOME": str(tmp_path)}) == tmp_path / ".dapr" / "nr.db"
    assert SqliteSettings.from_metadata({}, env={"HOME": "/h"}).path == Path("/h/.dapr/nr.db")
    # `dapr --home X run` gives daprd DAPR_HOME=X; `dapr list` reads X/nr.db: the same file.
    both = {"HOME": "/h", "DAPR_HOME": str(tmp_path / "dh")}
    assert default_db_path(both) == tmp_path / "dh" / "nr.db"
    assert SqliteSettings.from_metadata({}, env=both).path == tmp_path / "dh" / "nr.db"
    assert default_db_path({"HOME": "/h", "DAPR_HOME": ""}) == Path("/h/.dapr/nr.db")
    bad = {
        "x; drop table y": {"tableName": "x; drop table y"},
        "at least 1s greater than timeout": {"updateInterval": "1s"},
        "fractions of seconds": {"updateInterval": "2500ms"},
        "must be greater than 1s": {"timeout": "500ms"},
        "forbidden option '_pragma=busy_timeout'": {
            "connectionString": "file:x.db?_pragma=busy_timeout(5)"
        },
        "in-memory": {"connectionString": ":memory:"},
        "not a boolean": {"disableWAL": "maybe"},
    }
    for text, metadata in bad.items():
        with pytest.raises(ConfigError, match=re.escape(text)):
            SqliteSettings.from_metadata(metadata)
    with pytest.raises(ConfigError, match="missing connection string"):
        from_spec("sqlite", {}, internal_port=1)


def test_legacy_pysentry_table_is_replaced(tmp_path: Path) -> None:
    db = tmp_path / "nr.db"
    con = sqlite3.connect(str(db), isolation_level=None)
    con.execute("CREATE TABLE hosts (registration_id TEXT PRIMARY KEY, app_id TEXT, pid INTEGER)")
    con.close()
    r = _resolver(db, FakeClock())
    r.register(Registration("b", "default", "127.0.0.1:1001"))
    assert "pid" not in _schema(db)["hosts"]


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
        time.sleep(0.2)  # the heartbeat now waits in SQLite's busy handler (800 ms)
        started = time.monotonic()
        assert r.resolve("b", "default") == "127.0.0.1:1001"
        assert time.monotonic() - started < 0.5
    finally:
        other.execute("COMMIT")
        beat.join(10)
        other.close()
        r.close()
    assert not beat.is_alive()


def test_fixed_cadence_heartbeats_keep_a_row_fresh_despite_late_beats(tmp_path: Path) -> None:
    """updateInterval 2s, timeout 1s: a beat every second, due just after a whole second, so a
    beat up to 0.9 s late never lets ``now - last_update`` reach 2 (as happens with drifting
    sleeps across a second boundary)."""
    clock = FakeClock()
    clock.now = datetime.fromtimestamp(1_800_000_000.7, UTC)
    settings = SqliteSettings(tmp_path / "nr.db", timedelta(seconds=2))
    mine, caller = SqliteResolver(settings, clock=clock), SqliteResolver(settings, clock=clock)
    mine.register(Registration("b", "default", "127.0.0.1:1001"))
    delay, following = mine.next_heartbeat_delay(1_800_000_001.05)
    assert (round(delay, 6), following) == (0.35, 1_800_000_002.05)
    events: list[tuple[float, str]] = []
    due = 1_800_000_001.05
    for k in range(20):
        late = (k * 0.37) % 0.9  # up to 0.9 s late, never bunching
        events.append((due + late, "beat"))
        due += 1
    events += [(1_800_000_000.7 + i * 0.05, "look") for i in range(1, 400)]
    for at, what in sorted(events):
        clock.now = datetime.fromtimestamp(at, UTC)
        if what == "beat":
            mine.heartbeat()
        elif at < events[19][0]:
            assert caller.addresses("b", "default") == ("127.0.0.1:1001",), at
    # A beat that is more than a whole period late is skipped, not bunched.
    clock.now = datetime.fromtimestamp(1_800_000_010.5, UTC)
    delay, following = mine.next_heartbeat_delay(1_800_000_008.05)
    assert (round(delay, 6), following) == (0.55, 1_800_000_012.05)


async def test_a_heartbeat_that_hit_a_locked_database_is_retried_before_the_next_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer holds the database past the busy timeout (800 ms: e.g. stuck in a slow
    fsync on a busy disk) while a beat is due. The beat fails, and is tried again 0.25 s later,
    not a whole period later: the row stays fresh for callers."""
    db = tmp_path / "nr.db"
    # updateInterval 4s, timeout 1s: a beat every 3 s, just after a whole second.
    r = SqliteResolver(SqliteSettings(db, timedelta(seconds=4)))
    r.register(Registration("b", "default", "127.0.0.1:1001"))
    other = sqlite3.connect(str(db), isolation_level=None)
    await asyncio.sleep(math.ceil(time.time()) - time.time() + 0.01)  # a whole second has begun
    second = math.floor(time.time())
    task = asyncio.create_task(r.run())  # its first beat: second + 1.05
    try:
        await asyncio.sleep(second + 1 - time.time())
        other.execute("BEGIN IMMEDIATE")  # held over the beat and past the busy timeout
        await asyncio.sleep(second + 2 - time.time())
        other.execute("COMMIT")
        await asyncio.sleep(second + 2.6 - time.time())  # the retry ran; the next beat is at +4.05
        (last,) = other.execute("SELECT last_update FROM hosts").fetchone()
        assert last == second + 2
        assert "Failed to update host registration: database error: database is locked" in (
            caplog.text
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        other.close()
        r.close()


@pytest.mark.parametrize(
    ("disable_wal", "mode", "synchronous"), [(False, "wal", 1), (True, "delete", 2)]
)
def test_wal_commits_do_not_wait_for_fsync(
    tmp_path: Path, disable_wal: bool, mode: str, synchronous: int
) -> None:
    """WAL with ``synchronous=NORMAL`` (1): a heartbeat's commit does not hold the write lock
    through an fsync, which on a busy disk outlasted busyTimeout and failed the other sidecars'
    heartbeats. Without WAL (rollback journal) SQLite's default FULL (2) stays."""
    settings = dataclasses.replace(
        SqliteSettings(tmp_path / "nr.db", timedelta(seconds=5)), disable_wal=disable_wal
    )
    r = SqliteResolver(settings, clock=FakeClock())
    try:
        for con in (r._db, r._reader):
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == mode
            assert con.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    finally:
        r.close()
