"""The shared registrations query on a database only Go daprds used (no side table)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pysentry.nameresolution import SqliteSettings
from pysentry.nameresolution.registrations import query_registrations


def test_go_only_database_without_side_table(tmp_path: Path) -> None:
    con = sqlite3.connect(str(tmp_path / "nr.db"), isolation_level=None)
    con.execute(
        "CREATE TABLE hosts (registration_id TEXT PRIMARY KEY, address TEXT, app_id TEXT,"
        " namespace TEXT, last_update INTEGER)"
    )
    con.execute("INSERT INTO hosts VALUES ('go-1', '127.0.0.1:2001', 'goapp', '', 1000)")
    con.execute("INSERT INTO hosts VALUES ('go-0', '127.0.0.1:2000', 'old', '', 900)")
    settings = SqliteSettings(tmp_path / "nr.db")  # updateInterval 5 s
    fresh = query_registrations(con, settings, now=1004, with_side_table=False)
    assert [(r.app_id, r.address, r.namespace, r.pid, r.spiffe_id) for r in fresh] == [
        ("goapp", "127.0.0.1:2001", "", 0, "")
    ]
    assert query_registrations(con, settings, now=1005, with_side_table=False) == ()
    every = query_registrations(con, settings, now=1005, include_stale=True, with_side_table=False)
    assert [r.app_id for r in every] == ["goapp", "old"]
    con.close()
