"""Dapr's ``sqlite`` name resolver (components-contrib v1.16 ``nameresolution/sqlite``), in Python.

One SQLite file shared by every sidecar on the host, Go daprd or pysentry daprd, in Dapr's
schema, so each finds the other whichever started first:

- migrations as ``sqlitemigrations.Migrations``: in one ``BEGIN EXCLUSIVE`` transaction,
  ``CREATE TABLE IF NOT EXISTS <metadataTable> (key, value)``, read ``nr-migrations``, and at
  level 0 run migration 1 (``CREATE TABLE <table> (registration_id TEXT NOT NULL PRIMARY KEY,
  address TEXT NOT NULL, app_id TEXT NOT NULL, namespace TEXT NOT NULL, last_update INTEGER NOT
  NULL)`` with the unique index on ``address`` and the index on ``last_update``), then set
  ``nr-migrations`` to ``1``;
- register: ``REPLACE INTO`` a row with a new UUID, ``<host>:<internal port>``, the app-id,
  namespace ``''`` (Dapr v1.16 always writes ``''``) and ``last_update`` in Unix seconds;
- heartbeat every ``updateInterval - timeout``: ``UPDATE ... WHERE registration_id AND
  address``; 0 rows means another host took the address: "Host registration lost", fatal
  (the ticker is :mod:`.sqlite_heartbeat`'s);
- resolve: rows of the app-id with ``now - last_update < updateInterval`` (whole seconds);
- unregister: ``DELETE`` of our row.

pysentry's extras (namespace, pid, ports, SPIFFE ID, certificate expiry, for ``dapr list`` and
``dapr mtls``) live in a side table ``<table>_pysentry`` keyed by ``registration_id``, which
Dapr never reads. A lookup takes rows whose side-table namespace is the target's, and rows
without one (Go daprd's, which carry no namespace). The cleanup deletes rows older than
``cleanupInterval`` (Dapr's v1.16 query deletes the *fresh* rows instead; see docs/interop.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from pysentry.clock import Clock, system_clock
from pysentry.nameresolution.base import Registration, ResolutionError
from pysentry.nameresolution.registrations import query_registrations, side_table
from pysentry.nameresolution.sqlite_heartbeat import RegistrationLost as RegistrationLost
from pysentry.nameresolution.sqlite_heartbeat import keep_registered, next_beat
from pysentry.nameresolution.sqlite_migrations import perform_migrations
from pysentry.nameresolution.sqlite_settings import SqliteSettings

log = logging.getLogger(__name__)

NO_HOST = "no host found with the given ID"
_CACHE_TTL = timedelta(seconds=1)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class SqliteResolver:
    """Register, heartbeat, resolve, over one connection for writes and one for lookups."""

    def __init__(self, settings: SqliteSettings, *, clock: Clock = system_clock) -> None:
        self._settings = settings
        self._clock = clock
        self._id = ""
        self._registration: Registration | None = None
        self._cache: dict[tuple[str, str], tuple[datetime, tuple[str, ...]]] = {}
        self._rr: dict[tuple[str, str], int] = {}
        self._refreshing: set[tuple[str, str]] = set()
        settings.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        t, side = settings.table, side_table(settings)
        self._t, self._side = t, side
        # Heartbeats run in a worker thread (a write can wait for another sidecar's lock), so
        # the connection is shared across threads behind a lock; lookups have their own.
        self._lock = threading.Lock()
        self._db = self._connect()
        try:
            perform_migrations(self._db, t, settings.metadata_table, settings.path)
        except BaseException:
            self._db.close()  # leaves no -wal/-shm behind a damaged file
            raise
        self._read_lock = threading.Lock()
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        s = self._settings
        db = sqlite3.connect(
            str(s.path),
            timeout=max(s.busy_timeout.total_seconds(), 0.0),
            isolation_level=None,
            check_same_thread=False,
        )
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute(f"PRAGMA journal_mode={'DELETE' if s.disable_wal else 'WAL'}")
            if not s.disable_wal:
                # A commit does not wait for fsync (WAL stays consistent; a crash can only lose
                # the last heartbeats, which expire anyway): on a busy disk an fsync took longer
                # than busyTimeout, and the other sidecars' heartbeats failed behind it with
                # "database is locked" until their rows went stale ("no host found").
                db.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def settings(self) -> SqliteSettings:
        return self._settings

    @property
    def registration_id(self) -> str:
        return self._id

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def register(self, registration: Registration) -> None:
        """Dapr's ``registerHost``: a new registration ID, taking over the address."""
        self._id = str(uuid.uuid4())
        self._registration = registration
        with self._lock:
            self._db.execute(
                f"REPLACE INTO {self._t} (registration_id, address, app_id, namespace,"
                " last_update) VALUES (?, ?, ?, ?, ?)",
                (self._id, registration.address, registration.app_id, "", self._now()),
            )
            self._write_side(registration)
        log.info(
            "Registered app %r in namespace %r at %s with name resolution (sqlite %s)",
            registration.app_id,
            registration.namespace,
            registration.address,
            self._settings.path,
        )

    def _write_side(self, r: Registration) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {self._side} (registration_id, namespace, pid, http_port,"
            " metrics_port, app_port, spiffe_id, cert_expiry) VALUES (?,?,?,?,?,?,?,?)",
            (
                self._id,
                r.namespace,
                r.pid,
                r.http_port,
                r.metrics_port,
                r.app_port,
                r.spiffe_id,
                _ts(r.cert_expiry_at),
            ),
        )

    def update_identity(self, spiffe_id: str, cert_expiry_at: datetime | None) -> None:
        if self._registration is None:
            return
        self._registration = dataclasses.replace(
            self._registration, spiffe_id=spiffe_id, cert_expiry_at=cert_expiry_at
        )
        with self._lock:
            self._write_side(self._registration)

    def heartbeat(self) -> None:
        """Dapr's ``doRenewRegistration``; raises :class:`RegistrationLost` on 0 rows."""
        r = self._registration
        if r is None:
            return
        with self._lock:
            n = self._db.execute(
                f"UPDATE {self._t} SET last_update = ? WHERE registration_id = ? AND address = ?",
                (self._now(), self._id, r.address),
            ).rowcount
        if n == 0:
            raise RegistrationLost("host registration lost")

    def cleanup(self) -> int:
        """Delete rows not refreshed for ``cleanupInterval`` (crashed sidecars) and orphans."""
        cutoff = self._now() - int(self._settings.cleanup_interval.total_seconds())
        with self._lock:
            n = self._db.execute(f"DELETE FROM {self._t} WHERE last_update < ?", (cutoff,)).rowcount
            self._db.execute(
                f"DELETE FROM {self._side} WHERE registration_id NOT IN"
                f" (SELECT registration_id FROM {self._t})"
            )
        return int(n)

    def unregister(self) -> None:
        r, rid = self._registration, self._id
        self._registration = None
        if r is None:
            return
        with self._lock:
            self._db.execute(
                f"DELETE FROM {self._t} WHERE registration_id = ? AND address = ?", (rid, r.address)
            )
            self._db.execute(f"DELETE FROM {self._side} WHERE registration_id = ?", (rid,))

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def addresses(self, app_id: str, namespace: str) -> tuple[str, ...]:
        """Fresh addresses of ``app_id``: Go's rows (no namespace) and ours in ``namespace``."""
        rows = self._query(
            f"SELECT h.address FROM {self._t} h LEFT JOIN {self._side} s"
            " ON s.registration_id = h.registration_id"
            " WHERE h.app_id = ? AND ? - h.last_update < ?"
            " AND (s.namespace IS NULL OR s.namespace = ?) ORDER BY h.registration_id",
            (app_id, self._now(), self._settings.interval_seconds, namespace),
        )
        return tuple(dict.fromkeys(str(row[0]) for row in rows))

    def resolve(self, app_id: str, namespace: str) -> str:
        """One address for ``app_id``; replicas are round-robined. Lists are cached for 1 s;
        in a running event loop an expired list is served while a worker thread reads the new
        one, so only an app-id's first lookup (or one after :meth:`invalidate`) waits for the
        database on the loop."""
        key = (app_id, namespace)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is None or (now - cached[0] > _CACHE_TTL and not self._refresh(key)):
            cached = (now, self.addresses(app_id, namespace))
            self._cache[key] = cached
        addrs = cached[1]
        if not addrs:
            self._cache.pop(key, None)
            raise ResolutionError(NO_HOST)
        index = self._rr.get(key, 0)
        self._rr[key] = index + 1
        return addrs[index % len(addrs)]

    def _refresh(self, key: tuple[str, str]) -> bool:
        """Re-read ``key``'s addresses in a worker thread; False without a running loop."""
        if key in self._refreshing:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._refreshing.add(key)

        def done(future: asyncio.Future[tuple[str, ...]]) -> None:
            self._refreshing.discard(key)
            if future.cancelled() or key not in self._cache:  # invalidated meanwhile
                return
            if (err := future.exception()) is not None:
                log.debug("name resolution lookup of %r failed: %s", key[0], err)
                self._cache.pop(key, None)  # the next lookup reads (and reports) it itself
                return
            self._cache[key] = (self._clock(), future.result())

        loop.run_in_executor(None, self.addresses, *key).add_done_callback(done)
        return True

    def invalidate(self, app_id: str, namespace: str) -> None:
        self._cache.pop((app_id, namespace), None)

    def list_registrations(self, *, include_stale: bool = False) -> tuple[Registration, ...]:
        """Every row (fresh only, unless ``include_stale``), Go's included (namespace ``''``)."""
        with self._read_lock:
            return query_registrations(
                self._reader, self._settings, now=self._now(), include_stale=include_stale
            )

    def next_heartbeat_delay(self, next_at: float) -> tuple[float, float]:
        """(seconds to wait, the beat after) for a ticker due at Unix time ``next_at``
        (:func:`.sqlite_heartbeat.next_beat` with this resolver's period and clock)."""
        period = self._settings.heartbeat_period.total_seconds()
        return next_beat(next_at, period, self._clock().timestamp())

    async def run(self) -> None:
        """Heartbeat every ``updateInterval - timeout`` and clean up every ``cleanupInterval``
        until cancelled; raises :class:`RegistrationLost` (fatal, as in Dapr)."""
        await keep_registered(
            self,
            period=self._settings.heartbeat_period,
            cleanup_interval=self._settings.cleanup_interval,
            clock=self._clock,
        )

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
