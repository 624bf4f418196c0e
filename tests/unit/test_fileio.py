"""pysentry.fileio: atomic private writes, private directories, friendly read errors."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.fileio import (
    ensure_private_dir,
    read_file,
    remove_created_dirs,
    remove_stale_temps,
    write_atomic,
)
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
        (
            lambda p: p.mkdir(),
            r"^issuer key '.*/f': is a directory, not a regular file; replace it with the PEM file",
        ),
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


def test_write_atomic_holds_a_lock_on_its_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temp file being written is locked, so a cleaner can tell it from a dead writer's:
    a cleanup run in the middle of the write (hooked into its fsync) leaves it alone."""
    seen: list[bool] = []
    real_fsync = os.fsync

    def fsync_and_probe(fd: int) -> None:
        real_fsync(fd)
        for name in os.listdir(tmp_path):
            if name.endswith(".tmp"):
                seen.append(remove_stale_temps(tmp_path / "issuer.key") == ())
                assert (tmp_path / name).exists()

    monkeypatch.setattr(os, "fsync", fsync_and_probe)
    write_atomic(tmp_path / "issuer.key", b"key")
    monkeypatch.undo()
    assert seen == [True]
    assert os.listdir(tmp_path) == ["issuer.key"]


def test_remove_stale_temps(tmp_path: Path) -> None:
    target = tmp_path / "issuer.key"
    stale = tmp_path / ".issuer.key.a1b2c3d_.tmp"  # what a killed write_atomic leaves
    stale.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    kept = [
        tmp_path / ".issuer.key.backup",  # a user's file
        tmp_path / ".issuer.key.toolong123.tmp",  # not mkstemp's shape
        tmp_path / ".dapr-cli.issuer.key.a1b2c3d_.tmp",  # the CLI's own, not ours
        tmp_path / ".ca.crt.a1b2c3d_.tmp",  # another target's
    ]
    for path in kept:
        path.write_bytes(b"x")
    live = tmp_path / ".issuer.key.zzzzzzzz.tmp"
    live.write_bytes(b"being written")
    with live.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert remove_stale_temps(target) == (stale,)
    assert not stale.exists()
    assert all(p.exists() for p in [*kept, live])
    assert remove_stale_temps(target) == (live,)  # its writer is gone now
    assert remove_stale_temps(tmp_path / "missing" / "issuer.key") == ()


def test_ensure_private_dir_parents_are_0700_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    old = os.umask(0)
    try:
        created = ensure_private_dir(target)
    finally:
        os.umask(old)
    assert created == (tmp_path / "a", tmp_path / "a" / "b", target)
    assert [_mode(p) for p in created] == [0o700, 0o700, 0o700]
    assert ensure_private_dir(target) == ()
    remove_created_dirs(created)
    assert os.listdir(tmp_path) == []


def test_ensure_private_dir_with_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        ensure_private_dir(tmp_path / "file" / "sub")
    assert info.value.filename == str(tmp_path / "file")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_read_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "issuer.key"
    os.mkfifo(fifo)  # no writer: a plain read would wait forever
    with pytest.raises(ConfigError, match=r"'.*issuer.key': is a named pipe \(FIFO\), not a"):
        read_file(fifo, "issuer key")


@pytest.mark.parametrize(
    ("target", "kind"),
    [("/dev/zero", "a character device"), ("/", "a directory")],
    ids=["device", "directory"],
)
def test_read_file_refuses_special_files_behind_symlinks(
    tmp_path: Path, target: str, kind: str
) -> None:
    link = tmp_path / "ca.crt"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=f"is {kind}, not a regular file"):
        read_file(link, "trust anchors")


def test_read_file_follows_symlinks_to_regular_files_and_caps_size(tmp_path: Path) -> None:
    real = tmp_path / "..data" / "ca.crt"  # a Kubernetes secret volume's layout
    real.parent.mkdir()
    real.write_bytes(b"pem")
    (tmp_path / "ca.crt").symlink_to(real)
    assert read_file(tmp_path / "ca.crt", "trust anchors") == b"pem"
    with pytest.raises(ConfigError, match="larger than 2 bytes"):
        read_file(tmp_path / "ca.crt", "trust anchors", limit=2)
