"""Read the self-hosted name resolution database without writing to it.

Opening :class:`pysentry.nameresolution.SqliteResolver` runs Dapr's migrations and creates
pysentry's side table: right for a sidecar, wrong for ``dapr list``. This reads the same tables
through a ``mode=ro`` connection (``immutable`` when no connection has the WAL open, so no
``-wal``/``-shm`` files are left behind), and an absent side table (a database only Go daprds
used) just means no pysentry extras.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from pysentry.cli.configfile import name_resolution_metadata
from pysentry.cli.console import CliError
from pysentry.nameresolution import Registration, SqliteSettings
from pysentry.nameresolution.registrations import query_registrations, side_table

NR_DB_NAME = "nr.db"

_CORRUPT = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_ACCESS = ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH", "SQLITE_IOERR")


def database_problem(path: Path, err: sqlite3.Error, code: str = "") -> str:
    """``<file>: <what sqlite said>; <fix>`` for the self-hosted name resolution database."""
    what = f"name resolution database {str(path)!r}"
    code = code or getattr(err, "sqlite_errorname", "")
    if any(code.startswith(c) for c in _CORRUPT):
        return (
            f"{what} is damaged ({err}); stop every sidecar started with 'dapr run', then "
            f"delete {path.name} and its {path.name}-wal and {path.name}-shm files: sidecars "
            "create a new one and register again when they start"
        )
    if any(code.startswith(c) for c in _BUSY):
        return f"{what} is locked by another process ({err}); try again in a few seconds"
    if any(code.startswith(c) for c in _ACCESS):
        return (
            f"{what} cannot be opened ({err}); it must be a file you can read and write "
            "(sidecars keep it next to config.yaml), in a directory you can write"
        )
    return f"{what}: {err}"


def settings_for(config: Path, dapr_root: Path) -> SqliteSettings:
    """The resolver settings daprd uses with ``config`` (``<dapr_root>/nr.db`` by default)."""
    metadata = name_resolution_metadata(config)
    settings = SqliteSettings.from_metadata(metadata)
    if not metadata.get("connectionString"):
        settings = replace(settings, path=dapr_root / NR_DB_NAME)
    return settings


def _uri(path: Path) -> str:
    """``mode=ro``; for a WAL database that no connection has open (no ``-wal`` file) also
    ``immutable=1``, else SQLite would leave ``-wal`` and ``-shm`` files it may not remove."""
    params = "mode=ro"
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError:
        header = b""
    wal = header.startswith(b"SQLite format 3\0") and len(header) == 20 and header[18] == 2
    if wal and not os.path.lexists(f"{path}-wal"):
        params += "&immutable=1"
    return f"file:{quote(str(path))}?{params}"


def read_registrations(settings: SqliteSettings) -> tuple[Registration, ...]:
    """Fresh rows of the database (none when it does not exist or has no hosts table yet)."""
    path = settings.path
    if not os.path.lexists(path):
        return ()
    if path.is_dir():
        raise CliError(database_problem(path, sqlite3.OperationalError("it is a directory"),
                                        code="SQLITE_CANTOPEN"))  # fmt: skip
    uri = _uri(path)
    try:
        db = sqlite3.connect(uri, uri=True, timeout=max(settings.busy_timeout.total_seconds(), 0))
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master").fetchall()}
            if settings.table not in tables:
                return ()
            return query_registrations(
                db,
                settings,
                now=int(time.time()),
                with_side_table=side_table(settings) in tables,
            )
        finally:
            db.close()
    except sqlite3.Error as err:
        raise CliError(database_problem(path, err)) from err
