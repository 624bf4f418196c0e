"""``dapr list`` and ``dapr status``: the running sidecars, from self-hosted name resolution.

Each daprd registers in SQLite (``pysentry.nameresolution``): app-id, ports, PID, SPIFFE ID and
certificate expiry. ``status`` adds the CA's expiry and warns when the root expires within 30 days.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pysentry.cli import console
from pysentry.cli.backend import CA_FILE, ISSUER_CERT_FILE
from pysentry.cli.configfile import name_resolution_metadata
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import ConfigOption, CredentialsOption, credentials_of, expiry_warning
from pysentry.cli.pemfile import certificates
from pysentry.clock import system_clock
from pysentry.nameresolution import Registration, SqliteResolver, SqliteSettings

NR_DB_NAME = "nr.db"
OutputOption = Annotated[
    str, typer.Option("--output", "-o", help="The output format: table or json")
]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_sidecars(config: Path, dapr_root: Path) -> tuple[Registration, ...]:
    """Fresh registrations whose daprd process is still alive (``<dapr_root>/nr.db`` by default)."""
    metadata = name_resolution_metadata(config)
    settings = SqliteSettings.from_metadata(metadata)
    if not metadata.get("connectionString"):
        settings = replace(settings, path=dapr_root / NR_DB_NAME)
    path = settings.path
    try:
        if not os.path.lexists(path):
            return ()
        resolver = SqliteResolver(settings)
        try:
            rows = resolver.list_registrations()
        finally:
            resolver.close()
    except sqlite3.Error as err:
        raise CliError(_database_problem(path, err)) from err
    except OSError as err:
        raise CliError(
            f"name resolution database {str(path)!r}: cannot open: {err.strerror}"
        ) from err
    return tuple(r for r in rows if _alive(r.pid))


_CORRUPT = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_ACCESS = ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH", "SQLITE_IOERR")


def _database_problem(path: Path, err: sqlite3.Error) -> str:
    """``<file>: <what sqlite said>; <fix>`` for the self-hosted name resolution database."""
    what = f"name resolution database {str(path)!r}"
    code = getattr(err, "sqlite_errorname", "")
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


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    hours = console.hours_until(value, now)
    return f"{console.go_time(value)} ({hours}h)"


def _table(rows: tuple[Registration, ...], now: datetime) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "APP ID",
        "NAMESPACE",
        "HTTP PORT",
        "INTERNAL GRPC",
        "APP PORT",
        "METRICS PORT",
        "DAPRD PID",
        "IDENTITY",
        "CERT EXPIRES",
    ):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            r.app_id,
            r.namespace,
            str(r.http_port or "-"),
            r.address.rpartition(":")[2],
            str(r.app_port or "-"),
            str(r.metrics_port or "-"),
            str(r.pid or "-"),
            r.spiffe_id or "(mTLS off)",
            _when(r.cert_expiry_at, now),
        )
    return table


def _json(rows: tuple[Registration, ...]) -> str:
    def encode(r: Registration) -> dict[str, object]:
        data = asdict(r)
        for key in ("cert_expiry_at", "last_update_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    return json.dumps([encode(r) for r in rows], indent=2)


def _show(rows: tuple[Registration, ...], output: str, now: datetime) -> None:
    if output == "json":
        print(_json(rows))
    elif output != "table":
        raise CliError(f"--output {output!r} is not supported: use table or json", exit_code=2)
    elif not rows:
        console.info("No Dapr instances found.")
    else:
        console.table_console().print(_table(rows, now))


def list_command(
    ctx: typer.Context, config: ConfigOption = None, output: OutputOption = "table"
) -> None:
    """List the running sidecars (from self-hosted name resolution)."""
    home: DaprHome = ctx.find_root().obj
    rows = running_sidecars((config or home.config_file).expanduser(), home.root)
    _show(rows, output, system_clock())


def status_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    issuer_credentials: CredentialsOption = None,
    output: OutputOption = "table",
) -> None:
    """Show the running sidecars and the expiry of the CA; warns 30 days before the root expires."""
    home: DaprHome = ctx.find_root().obj
    now = system_clock()
    rows = running_sidecars((config or home.config_file).expanduser(), home.root)
    _show(rows, output, now)
    if output == "json":
        return
    creds = credentials_of(ctx, issuer_credentials)
    if not any(creds.has(name) for name in (CA_FILE, ISSUER_CERT_FILE)):
        console.info(f"No CA credentials in {creds.location}: mTLS is not set up (see 'dapr init')")
        return
    anchors = certificates(creds.read_anchors(), creds.label(CA_FILE))
    issuer = certificates(creds.read_file(ISSUER_CERT_FILE), creds.label(ISSUER_CERT_FILE))
    for index, root in enumerate(anchors):
        label = "Root certificate" if len(anchors) == 1 else f"Root certificate #{index + 1}"
        console.info(
            f"{label} expires in {console.hours_until(root.not_valid_after_utc, now)} "
            f"hours. Expiry date: {console.go_time(root.not_valid_after_utc)}"
        )
    if issuer:
        console.info(
            "Issuer certificate expires in "
            f"{console.hours_until(issuer[0].not_valid_after_utc, now)} "
            f"hours. Expiry date: {console.go_time(issuer[0].not_valid_after_utc)}"
        )
    text = expiry_warning(anchors, now)
    if text is not None:
        console.warning(text)
