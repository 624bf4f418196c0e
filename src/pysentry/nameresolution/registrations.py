"""The one registrations query, shared by :class:`~pysentry.nameresolution.SqliteResolver` and the
CLI's read-only reader (``dapr list``/``status``): a single ``SELECT``, nothing written.

pysentry's extras (pid, ports, SPIFFE ID, certificate expiry) live in the side table
``<tableName>_pysentry``; a database only Go daprds used has none, and its rows come back with
empty extras (``with_side_table=False``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from pysentry.nameresolution.base import Registration
from pysentry.nameresolution.sqlite_settings import SqliteSettings

SIDE_TABLE_SUFFIX = "_pysentry"


def side_table(settings: SqliteSettings) -> str:
    """The name of pysentry's side table next to ``settings.table``."""
    return settings.table + SIDE_TABLE_SUFFIX


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def query_registrations(
    db: sqlite3.Connection,
    settings: SqliteSettings,
    *,
    now: int,
    include_stale: bool = False,
    with_side_table: bool = True,
) -> tuple[Registration, ...]:
    """Every row fresh at Unix time ``now`` (all rows with ``include_stale``), Go's included
    (namespace ``''`` without a side row), ordered by app-id then registration id."""
    table = settings.table
    if with_side_table:
        sql = (
            "SELECT h.app_id, coalesce(s.namespace, h.namespace), h.address, s.pid, s.http_port,"
            " s.metrics_port, s.app_port, s.spiffe_id, s.cert_expiry, h.last_update"
            f" FROM {table} h LEFT JOIN {side_table(settings)} s"
            " ON s.registration_id = h.registration_id"
        )
    else:
        sql = (
            "SELECT h.app_id, h.namespace, h.address, NULL, NULL, NULL, NULL, NULL, NULL,"
            f" h.last_update FROM {table} h"
        )
    sql += " WHERE ? OR ? - h.last_update < ? ORDER BY h.app_id, h.registration_id"
    rows = db.execute(sql, (include_stale, now, settings.interval_seconds)).fetchall()
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
