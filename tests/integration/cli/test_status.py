"""``dapr list`` / ``dapr status`` without sidecars: empty list, CA expiry and the 30-day warning.
A damaged or unopenable ``nr.db`` and a damaged ``ca.crt`` give an error naming file and fix.

With running sidecars they are exercised by tests/e2e (quickstart and CLI flows).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pysentry.nameresolution import Registration, SqliteResolver, SqliteSettings
from tests.integration.cli.conftest import (
    Dapr,
    give_to_nobody,
    run_dapr_forked,
    tree_state,
    without_dir_times,
)
from tests.integration.cli.damage import bad_base64, two_roots


def test_list_and_status_without_sidecars(dapr: Dapr) -> None:
    assert json.loads(dapr("list", "-o", "json").stdout) == []
    assert "No Dapr instances found." in dapr("list").stdout
    assert dapr("list", "-o", "yaml").stdout == "[]\n"
    bad = dapr("list", "-o", "xml")
    assert bad.returncode == 1 and bad.stderr == "error: An invalid output format was specified.\n"
    nothing = dapr("status")
    assert nothing.returncode == 0 and "mTLS is not set up" in nothing.stdout

    assert dapr("mtls", "renew-certificate", "--valid-until", "5").returncode == 0
    status = dapr("status")
    assert status.returncode == 0, status.output
    assert "Root certificate expires in 11" in status.stdout  # 119 or 120 hours
    assert (
        "⚠  Dapr root certificate of your self-hosted installation expires in 4 days. Expiry date: "
    ) in status.stdout
    assert "certificate renewal instructions" in status.stdout


def _registered_db(path: Path) -> None:
    """A real name resolution database (its tables and indexes span several pages)."""
    resolver = SqliteResolver(SqliteSettings(path))
    try:
        resolver.register(Registration("appa", "default", "127.0.0.1:10000"))
    finally:
        resolver.close()


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database, just some bytes " * 20)


def _truncated(path: Path) -> None:
    _registered_db(path)
    assert path.stat().st_size > 3 * 4096 and not path.with_name("nr.db-wal").exists()
    os.truncate(path, 4096)


@pytest.mark.parametrize(
    ("damage", "sqlite_says"),
    [(_garbage, "file is not a database"), (_truncated, "database disk image is malformed")],
    ids=["garbage", "truncated"],
)
def test_list_and_status_name_a_damaged_nr_db_and_the_fix(
    dapr: Dapr, home: Path, damage: Callable[[Path], None], sqlite_says: str
) -> None:
    db = home / ".dapr" / "nr.db"
    damage(db)
    before = tree_state(home)
    for command in ("list", "status"):
        result = dapr(command)
        assert result.returncode == 1, result.output
        assert result.stderr.startswith(
            f"error: name resolution database {str(db)!r} is damaged ({sqlite_says}); stop every "
            "sidecar started with 'dapr run', then delete nr.db and its nr.db-wal and nr.db-shm "
            "files"
        ), result.stderr
        assert "Traceback" not in result.output
    # nr.db is untouched and nothing is left beside it; SQLite may create and remove its -wal and
    # -shm files while it opens the database, which moves the directory's mtime.
    assert without_dir_times(tree_state(home)) == without_dir_times(before)


def test_an_unopenable_nr_db_is_named(dapr: Dapr, home: Path, nobody_home: Path) -> None:
    db = home / ".dapr" / "nr.db"
    db.mkdir(parents=True)
    result = dapr("list")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: name resolution database {str(db)!r} cannot be opened (it is a directory); it "
        "must be a file you can read and write"
    ), result.stderr
    hidden = nobody_home / ".dapr" / "nr.db"
    _registered_db(hidden)
    give_to_nobody(nobody_home)
    hidden.chmod(0)
    before = tree_state(nobody_home)
    unreadable = run_dapr_forked(nobody_home, "list")
    assert unreadable.returncode == 1, unreadable.output
    assert f"name resolution database {str(hidden)!r} cannot be opened" in unreadable.stderr
    assert "Traceback" not in unreadable.output
    assert tree_state(nobody_home) == before


def test_status_names_a_damaged_ca_crt(dapr: Dapr, certs: Path) -> None:
    two_roots(certs)
    ca_file = certs / "ca.crt"
    ca_file.write_bytes(bad_base64(ca_file.read_bytes()))
    result = dapr("status")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: ca.crt {str(ca_file)!r}: PEM block #2 ('CERTIFICATE')")
    assert "mTLS is not set up" not in result.stdout
