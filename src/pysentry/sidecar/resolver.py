"""Self-hosted name resolution in SQLite, in the shape of Dapr's ``sqlite`` resolver.

Each sidecar registers ``app-id -> host:internal-port`` (plus what ``dapr list`` and
``dapr mtls`` want to show: pid, HTTP port, SPIFFE ID, cert expiry) and heartbeats every
``updateInterval``. Lookups skip rows older than three intervals and round-robin over replicas.

Configuration (``spec.nameResolution``)::

    nameResolution:
      component: sqlite
      configuration:
        connectionString: /tmp/nr.db       # default: $HOME/.dapr/nr.db
        updateInterval: 5s                 # Go duration
        tableName: hosts
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pysentry.clock import Clock, system_clock
from pysentry.errors import ConfigError
from pysentry.sidecar.invocation import InvocationError

log = logging.getLogger(__name__)

DEFAULT_UPDATE_INTERVAL = timedelta(seconds=5)
STALE_AFTER_INTERVALS = 3
CLEANUP_AFTER = timedelta(hours=1)
_CACHE_TTL = timedelta(seconds=1)
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``$HOME/.dapr/nr.db`` (``HOME`` honoured, as Dapr's CLI does)."""
    env = os.environ if env is None else env
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".dapr" / "nr.db"


@dataclass(frozen=True, slots=True)
class Registration:
    """One sidecar instance as seen by name resolution (and by ``dapr list``)."""

    app_id: str
    namespace: str
    address: str
    pid: int = 0
    http_port: int = 0
    metrics_port: int = 0
    app_port: int = 0
    spiffe_id: str = ""
    cert_expiry_at: datetime | None = None
    last_update_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    path: Path
    update_interval: timedelta = DEFAULT_UPDATE_INTERVAL
    table: str = "hosts"

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, object], *, env: Mapping[str, str] | None = None
    ) -> SqliteSettings:
        from pysentry.config.duration import parse_duration

        conn = str(metadata.get("connectionString") or "")
        if conn.startswith("file:"):
            conn = conn[len("file:") :].split("?", 1)[0]
        path = Path(conn).expanduser() if conn else default_db_path(env)
        interval = DEFAULT_UPDATE_INTERVAL
        if raw := metadata.get("updateInterval"):
            interval = parse_duration(str(raw))
            if interval <= timedelta(0):
                raise ConfigError(
                    f"nameResolution.configuration.updateInterval: must be positive: {raw!r}"
                )
        table = str(metadata.get("tableName") or "hosts")
        if not _TABLE_RE.match(table):
            raise ConfigError(
                f"nameResolution.configuration.tableName: invalid table name: {table!r}"
            )
        return cls(path=path, update_interval=interval, table=table)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class SqliteResolver:
    """Register, heartbeat, resolve. SQLite reads are sub-millisecond, so they run inline."""

    def __init__(self, settings: SqliteSettings, *, clock: Clock = system_clock) -> None:
        self._settings = settings
        self._clock = clock
        self._id = secrets.token_hex(16)
        self._registration: Registration | None = None
        self._cache: dict[tuple[str, str], tuple[datetime, tuple[str, ...]]] = {}
        self._rr: dict[tuple[str, str], int] = {}
        settings.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Heartbeats run in a worker thread (a write can wait for another sidecar's lock), so
        # the connection is shared across threads behind a lock.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(settings.path), timeout=5.0, isolation_level=None, check_same_thread=False
        )
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA journal_mode=WAL")
            # A lost heartbeat row is rewritten a few seconds later: no fsync per commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {settings.table} ("
            "registration_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, namespace TEXT NOT NULL,"
            " address TEXT NOT NULL, pid INTEGER, http_port INTEGER, metrics_port INTEGER,"
            " app_port INTEGER, spiffe_id TEXT, cert_expiry REAL, last_update REAL NOT NULL)"
        )
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS {settings.table}_app"
            f" ON {settings.table} (app_id, namespace)"
        )
        # Lookups run on the event loop, so they get a connection and lock of their own: they
        # never queue behind a heartbeat that holds ``_lock`` while it waits for another
        # sidecar's write lock (in WAL mode readers do not wait for writers).
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(
            str(settings.path), timeout=5.0, isolation_level=None, check_same_thread=False
        )

    @property
    def settings(self) -> SqliteSettings:
        return self._settings

    def register(self, registration: Registration) -> None:
        """Insert or refresh this instance's row (also used to publish a rotated identity)."""
        self._registration = registration
        self._write()
        log.info(
            "Registered app %r in namespace %r at %s with name resolution (sqlite %s)",
            registration.app_id,
            registration.namespace,
            registration.address,
            self._settings.path,
        )

    def update_identity(self, spiffe_id: str, cert_expiry_at: datetime | None) -> None:
        if self._registration is None:
            return
        self._registration = dataclasses.replace(
            self._registration, spiffe_id=spiffe_id, cert_expiry_at=cert_expiry_at
        )
        self._write()

    def _write(self) -> None:
        r = self._registration
        if r is None:
            return
        self._execute(
            f"INSERT OR REPLACE INTO {self._settings.table} (registration_id, app_id, namespace,"
            " address, pid, http_port, metrics_port, app_port, spiffe_id, cert_expiry, last_update)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                self._id,
                r.app_id,
                r.namespace,
                r.address,
                r.pid,
                r.http_port,
                r.metrics_port,
                r.app_port,
                r.spiffe_id,
                _ts(r.cert_expiry_at),
                self._clock().timestamp(),
            ),
        )

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """Run one statement under the lock; returns the row count."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def heartbeat(self) -> None:
        self._write()

    def cleanup(self) -> int:
        """Delete rows not refreshed for :data:`CLEANUP_AFTER` (crashed sidecars)."""
        return self._execute(
            f"DELETE FROM {self._settings.table} WHERE last_update < ?",
            ((self._clock() - CLEANUP_AFTER).timestamp(),),
        )

    def unregister(self) -> None:
        self._execute(
            f"DELETE FROM {self._settings.table} WHERE registration_id = ?", (self._id,)
        )
        self._registration = None

    def _fresh_since(self) -> float:
        stale = self._settings.update_interval * STALE_AFTER_INTERVALS
        return (self._clock() - stale).timestamp()

    def addresses(self, app_id: str, namespace: str) -> tuple[str, ...]:
        rows = self._query(
            f"SELECT address FROM {self._settings.table} WHERE app_id = ? AND namespace = ?"
            " AND last_update >= ? ORDER BY registration_id",
            (app_id, namespace, self._fresh_since()),
        )
        return tuple(dict.fromkeys(str(row[0]) for row in rows))

    def resolve(self, app_id: str, namespace: str) -> str:
        """One address for ``app_id`` in ``namespace``; replicas are round-robined."""
        key = (app_id, namespace)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is None or now - cached[0] > _CACHE_TTL:
            cached = (now, self.addresses(app_id, namespace))
            self._cache[key] = cached
        addrs = cached[1]
        if not addrs:
            self._cache.pop(key, None)
            raise InvocationError(f"failed to resolve address for '{app_id}-dapr.{namespace}.svc'")
        index = self._rr.get(key, 0)
        self._rr[key] = index + 1
        return addrs[index % len(addrs)]

    def invalidate(self, app_id: str, namespace: str) -> None:
        self._cache.pop((app_id, namespace), None)

    def list_registrations(self, *, include_stale: bool = False) -> tuple[Registration, ...]:
        since = 0.0 if include_stale else self._fresh_since()
        rows = self._query(
            "SELECT app_id, namespace, address, pid, http_port, metrics_port, app_port, spiffe_id,"
            f" cert_expiry, last_update FROM {self._settings.table} WHERE last_update >= ?"
            " ORDER BY app_id, registration_id",
            (since,),
        )
        return tuple(
            Registration(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                int(r[3] or 0),
                int(r[4] or 0),
                int(r[5] or 0),
                int(r[6] or 0),
                str(r[7] or ""),
                _dt(r[8]),
                _dt(r[9]),
            )
            for r in rows
        )

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        interval = self._settings.update_interval.total_seconds()
        try:
            await asyncio.to_thread(self.cleanup)
        except sqlite3.Error as err:
            log.warning("name resolution cleanup of stale rows failed: %s", err)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.heartbeat)
            except sqlite3.Error as err:
                log.warning("name resolution heartbeat failed: %s", err)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
