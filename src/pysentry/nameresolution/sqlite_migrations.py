"""The ``sqlite`` resolver's schema, migrated as components-contrib v1.16 does.

``perform_migrations`` runs in one ``BEGIN EXCLUSIVE`` transaction (so sidecars starting together
migrate once): ``CREATE TABLE IF NOT EXISTS <metadata> (key, value)``, read ``nr-migrations``,
and at level 0 create the hosts table with its two indexes and set the level to ``1``, exactly as
``sqlite_migrations.go`` (``CREATE TABLE`` without ``IF NOT EXISTS``). Then pysentry's side table
``<hosts>_pysentry``, which Dapr never reads.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

MIGRATIONS_KEY = "nr-migrations"


def perform_migrations(db: sqlite3.Connection, table: str, meta: str, path: Path) -> None:
    """Dapr's migrations of ``table`` and ``meta`` on ``db`` (autocommit connection)."""
    db.execute("BEGIN EXCLUSIVE TRANSACTION")
    try:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {meta} (key text NOT NULL PRIMARY KEY,"
            " value text NOT NULL)"
        )
        row = db.execute(f"SELECT value FROM {meta} WHERE key = ?", (MIGRATIONS_KEY,)).fetchone()
        level = int(row[0]) if row is not None else 0
        if level < 1:
            _drop_legacy_table(db, table, path)
            log.info("Creating hosts table '%s'", table)
            db.execute(
                f"CREATE TABLE {table} (registration_id TEXT NOT NULL PRIMARY KEY,"
                " address TEXT NOT NULL, app_id TEXT NOT NULL, namespace TEXT NOT NULL,"
                " last_update INTEGER NOT NULL)"
            )
            db.execute(f"CREATE UNIQUE INDEX {table}_address_idx ON {table} (address)")
            db.execute(f"CREATE INDEX {table}_last_update_idx ON {table} (last_update)")
            db.execute(f"REPLACE INTO {meta} (key, value) VALUES (?, '1')", (MIGRATIONS_KEY,))
        db.execute("COMMIT TRANSACTION")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK TRANSACTION")
        raise
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {table}_pysentry (registration_id TEXT NOT NULL PRIMARY KEY,"
        " namespace TEXT NOT NULL, pid INTEGER, http_port INTEGER, metrics_port INTEGER,"
        " app_port INTEGER, spiffe_id TEXT, cert_expiry REAL)"
    )


def _drop_legacy_table(db: sqlite3.Connection, table: str, path: Path) -> None:
    """pysentry < 0.2 wrote its own ``hosts`` shape (with ``pid``); its rows are heartbeats only."""
    cols = {r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()}
    if "pid" in cols:
        log.warning(
            "Name resolution: replacing the old pysentry table %r in %s with Dapr's schema "
            "(its rows are heartbeats; running sidecars register again on restart)",
            table,
            path,
        )
        db.execute(f"DROP TABLE {table}")
