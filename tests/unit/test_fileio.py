"""pysentry.fileio: atomic private writes, private directories, friendly read errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.fileio import ensure_private_dir, read_file, write_atomic
from tests.unprivileged import run_unprivileged, unreadable_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_creates_0600(tmp_path: Path) -> None:
    target = tmp_path / "issuer.key"
    write_atomic(target, b"secret")
    assert target.read_bytes() == b"secret"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["issuer.key"]  # no temp file left behind


def test_write_atomic_replaces_and_resets_mode(tmp_path: Path) -> None:
    target = tmp_path / "ca.crt"
    target.write_bytes(b"old")
    target.chmod(0o644)
    inode = target.stat().st_ino
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert target.stat().st_ino != inode  # renamed over, not rewritten in place


def test_write_atomic_custom_mode(tmp_path: Path) -> None:
    target = tmp_path / "public.pem"
    write_atomic(target, b"x", mode=0o644)
    assert _mode(target) == 0o644


def test_write_atomic_missing_dir_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "f", b"x")
    assert os.listdir(tmp_path) == []


def test_write_atomic_failure_cleans_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "child").write_bytes(b"")
    with pytest.raises(OSError):
        write_atomic(target, b"x")  # cannot rename a file over a non-empty directory
    assert sorted(os.listdir(tmp_path)) == ["dir-in-the-way"]


def test_ensure_private_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    old = os.umask(0o022)
    try:
        ensure_private_dir(target)
    finally:
        os.umask(old)
    assert target.is_dir()
    assert _mode(target) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    ensure_private_dir(existing)
    assert _mode(existing) == 0o755  # existing directories are left alone


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, r"^issuer key '.*/f': file does not exist$"),
        (lambda p: p.mkdir(), r"^issuer key '.*/f': is a directory, expected a file$"),
    ],
    ids=["missing", "directory"],
)
def test_read_file_errors(tmp_path: Path, setup: object, message: str) -> None:
    path = tmp_path / "f"
    setup(path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        read_file(path, "issuer key")


def test_read_file_permission_denied() -> None:
    def check() -> str:
        read_file(path, "issuer key")
        return "read"

    with unreadable_file(b"x") as path:
        code, message = run_unprivileged(check)
    assert code == 3, message
    assert "permission denied" in message


def test_read_file_ok(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    assert read_file(path, "thing") == b"data"
