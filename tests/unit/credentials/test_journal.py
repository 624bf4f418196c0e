"""Crash-atomic creation, crash point by crash point: every state a crash can leave is built on
disk exactly as :func:`create_all` builds it, then :func:`recover` must finish or roll back."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pysentry.credentials import journal
from pysentry.credentials.journal import (
    JOURNAL_NAME,
    JournalError,
    create_all,
    locked,
    recover,
    staged_path,
)

NAMES = ("issuer.key", "issuer.crt", "ca.crt")


def files_in(directory: Path) -> list[tuple[Path, bytes]]:
    return [(directory / name, f"content of {name}\n".encode()) for name in NAMES]


def entries(files: list[tuple[Path, bytes]]) -> list[journal._Entry]:
    return [journal._Entry(t, staged_path(t), journal._digest(d)) for t, d in files]


def stage(files: list[tuple[Path, bytes]], count: int) -> None:
    for target, data in files[:count]:
        journal._write_new(staged_path(target), data)


def commit(directory: Path, files: list[tuple[Path, bytes]]) -> None:
    stage(files, len(files))
    journal._write_journal(directory / JOURNAL_NAME, entries(files))


def publish(files: list[tuple[Path, bytes]], count: int) -> None:
    for target, _ in files[:count]:
        os.link(staged_path(target), target)


def targets(files: list[tuple[Path, bytes]]) -> list[Path]:
    return [t for t, _ in files]


def assert_complete(directory: Path, files: list[tuple[Path, bytes]]) -> None:
    assert sorted(os.listdir(directory)) == sorted(NAMES)
    for target, data in files:
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == 0o600


def _staged(n: int) -> Callable[[Path, list[tuple[Path, bytes]]], None]:
    return lambda d, f: stage(f, n)


def _published(n: int) -> Callable[[Path, list[tuple[Path, bytes]]], None]:
    def build(d: Path, f: list[tuple[Path, bytes]]) -> None:
        commit(d, f)
        publish(f, n)

    return build


def _all_published_staged_gone(d: Path, f: list[tuple[Path, bytes]]) -> None:
    _published(3)(d, f)
    for target, _ in f:
        staged_path(target).unlink()


# Crash points before the commit: rolled back, nothing left.
@pytest.mark.parametrize(
    "crash",
    [_staged(1), _staged(2), _staged(3)],
    ids=["1-staged", "2-staged", "3-staged"],
)
def test_crash_before_commit_rolls_back(tmp_path: Path, crash: Callable[..., None]) -> None:
    files = files_in(tmp_path)
    crash(tmp_path, files)
    note = recover(tmp_path / JOURNAL_NAME, targets(files))
    assert note is not None and note.startswith("rolled back")
    assert os.listdir(tmp_path) == []


# Crash points after the commit: finished, the complete set in place.
@pytest.mark.parametrize(
    "crash",
    [_published(0), _published(1), _published(2), _published(3), _all_published_staged_gone],
    ids=["committed", "1-published", "2-published", "3-published", "staged-removed"],
)
def test_crash_after_commit_finishes(tmp_path: Path, crash: Callable[..., None]) -> None:
    files = files_in(tmp_path)
    crash(tmp_path, files)
    note = recover(tmp_path / JOURNAL_NAME, targets(files))
    assert note is not None and note.startswith("finished")
    assert_complete(tmp_path, files)


def test_nothing_to_recover(tmp_path: Path) -> None:
    assert recover(tmp_path / JOURNAL_NAME, targets(files_in(tmp_path))) is None


def test_a_users_file_is_never_touched(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    commit(tmp_path, files)
    publish(files, 1)  # ours: issuer.key
    (tmp_path / "ca.crt").write_bytes(b"the user's own root\n")  # theirs
    note = recover(tmp_path / JOURNAL_NAME, targets(files))
    assert note is not None and "rolled back" in note and "ca.crt" in note
    assert os.listdir(tmp_path) == ["ca.crt"]
    assert (tmp_path / "ca.crt").read_bytes() == b"the user's own root\n"


def test_a_staged_file_that_is_not_what_was_committed_rolls_back(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    commit(tmp_path, files)
    staged_path(files[2][0]).write_bytes(b"lost in a power cut\n")
    note = recover(tmp_path / JOURNAL_NAME, targets(files))
    assert note is not None and note.startswith("rolled back")
    assert os.listdir(tmp_path) == []


def test_a_journal_for_other_paths_rolls_back(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    commit(tmp_path, files)
    publish(files, 2)
    other = [tmp_path / "elsewhere.crt", *targets(files)[1:]]
    note = recover(tmp_path / JOURNAL_NAME, other)
    assert note is not None and "other file paths" in note
    assert os.listdir(tmp_path) == []


def test_an_unreadable_journal_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(b"{not json")
    with pytest.raises(JournalError, match=r"cannot be read .*delete it"):
        recover(tmp_path / JOURNAL_NAME, targets(files_in(tmp_path)))


def test_create_all_in_one_go(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    create_all(tmp_path / JOURNAL_NAME, files)
    assert_complete(tmp_path, files)


def test_create_all_never_replaces_a_file_that_appears(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    (tmp_path / "ca.crt").write_bytes(b"appeared\n")
    with pytest.raises(FileExistsError, match=r"ca\.crt"):
        create_all(tmp_path / JOURNAL_NAME, files)
    assert os.listdir(tmp_path) == ["ca.crt"]
    assert (tmp_path / "ca.crt").read_bytes() == b"appeared\n"


def test_create_all_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filesystems without hard links (EPERM, as vfat answers): check, then rename."""

    def no_links(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(journal.os, "link", no_links)
    files = files_in(tmp_path)
    create_all(tmp_path / JOURNAL_NAME, files)
    assert_complete(tmp_path, files)


def test_staged_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        stage(files_in(tmp_path), 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(staged_path(tmp_path / "issuer.key").stat().st_mode) == 0o600


def test_lock_is_exclusive(tmp_path: Path) -> None:
    busy = pytest.raises(JournalError, match="another process has held its lock")
    with locked(tmp_path), busy, locked(tmp_path, timeout_s=0.1):
        pass
    with locked(tmp_path, timeout_s=0.1):  # released
        pass
