"""Crash-atomic creation of a set of new files: all of them appear, or none does.

Each file is first staged beside its target as ``.<name>.pysentry-new``; a journal,
``.pysentry-ca-generation`` in the trust anchors' directory, then commits the set. Crash point by
crash point (a crash is a SIGKILL, ENOSPC, or a power loss):

1. staging: each file is created exclusively with mode 0600, written and fsynced. A crash here
   leaves staged files and no journal: the next :func:`recover` deletes them (their names are
   fixed, so they are found). The targets were never touched.
2. commit: the journal (every target with its SHA-256) is written atomically and fsynced along
   with its directory. From here on, the set is published by whoever gets there.
3. publishing: each staged file is hard-linked to its target (a link never replaces an existing
   file), the directories are fsynced, then the staged names and the journal are removed. After a
   crash anywhere here, the next :func:`recover` finishes the job. A target that exists counts as
   ours only if its SHA-256 is the journal's; a staged file whose content does not match (never
   made durable before a power loss) makes it roll back instead.

A target that exists with other content (a user's file) is never touched: the generation is rolled
back instead (staged files, then our published targets, then the journal deleted, an order that
keeps a crash during the rollback recoverable too), leaving the user's partial set to be reported
as it is. Everything runs under an ``flock`` on the journal's directory, so two processes never
recover each other's live work.

Removals are not fsynced: a removal lost in a power loss brings back a staged file or a journal,
and the next :func:`recover` removes it again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pysentry.errors import PysentryError
from pysentry.fileio import MAX_READ_BYTES, PRIVATE_FILE_MODE, fsync_dir, write_atomic

log = logging.getLogger(__name__)

JOURNAL_NAME = ".pysentry-ca-generation"
STAGED_SUFFIX = ".pysentry-new"
LOCK_TIMEOUT_S = 30.0
_PUBLISHING = "publishing"


class JournalError(PysentryError):
    """The journal or its lock cannot be used; the message names the file and the fix."""


class Conflict(Exception):
    """A target exists that this generation did not write."""


def staged_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{STAGED_SUFFIX}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a regular file, None when it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, a symlink (ELOOP), unreadable: not a file we wrote
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_READ_BYTES:
            return None
        return _digest(handle.read())


@dataclass(frozen=True, slots=True)
class _Entry:
    target: Path
    staged: Path
    sha256: str


def _dirs(entries: Sequence[_Entry]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(e.target.parent for e in entries))


def _write_journal(journal: Path, entries: Sequence[_Entry]) -> None:
    body = {
        "phase": _PUBLISHING,
        "files": [
            {"target": str(e.target), "staged": str(e.staged), "sha256": e.sha256} for e in entries
        ],
    }
    write_atomic(journal, json.dumps(body, indent=1).encode() + b"\n")


def _read_journal(journal: Path) -> tuple[_Entry, ...]:
    try:
        body = json.loads(journal.read_bytes())
        phase = body["phase"]
        entries = tuple(
            _Entry(Path(f["target"]), Path(f["staged"]), str(f["sha256"])) for f in body["files"]
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise JournalError(
            f"CA generation journal {str(journal)!r}: cannot be read ({type(err).__name__}); "
            "only Sentry writes it, during a first start: delete it and any '.*.pysentry-new' "
            "files beside the credentials, then start again"
        ) from err
    if phase != _PUBLISHING or any(e.staged != staged_path(e.target) for e in entries):
        raise JournalError(
            f"CA generation journal {str(journal)!r}: not written by Sentry: delete it"
        )
    return entries


def _write_new(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_no_replace(staged: Path, target: Path) -> None:
    """``target`` becomes ``staged``'s content; :class:`FileExistsError` if it exists."""
    try:
        os.link(staged, target, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(target):  # no hard links here: check, then rename
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from err
        os.rename(staged, target)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rollback(journal: Path, entries: Sequence[_Entry]) -> None:
    for entry in entries:
        _unlink(entry.staged)
    for entry in entries:
        if _file_digest(entry.target) == entry.sha256:
            _unlink(entry.target)
    _unlink(journal)


def _publish(journal: Path, entries: Sequence[_Entry]) -> None:
    for entry in entries:
        if os.path.lexists(entry.target):
            if _file_digest(entry.target) != entry.sha256:
                raise Conflict(f"{str(entry.target)!r} appeared meanwhile")
            continue
        if _file_digest(entry.staged) != entry.sha256:
            raise Conflict(f"staged file {str(entry.staged)!r} is missing or changed")
        try:
            _link_no_replace(entry.staged, entry.target)
        except FileExistsError as err:
            raise Conflict(f"{str(entry.target)!r} appeared meanwhile") from err
    for directory in _dirs(entries):
        fsync_dir(directory)  # the targets are durable before anyone is told they exist
    for entry in entries:
        _unlink(entry.staged)
    _unlink(journal)


def create_all(journal: Path, files: Sequence[tuple[Path, bytes]]) -> None:
    """Create every ``(target, data)``, all or nothing. Call under :func:`locked` after
    :func:`recover`, with no target existing. On failure the directories are left as found and
    the error is raised (:class:`FileExistsError` when a target appeared meanwhile)."""
    entries = [_Entry(t, staged_path(t), _digest(d)) for t, d in files]
    try:
        for entry, (_, data) in zip(entries, files, strict=True):
            _write_new(entry.staged, data)
        _write_journal(journal, entries)  # the commit point
        _publish(journal, entries)
    except Conflict as err:
        _rollback(journal, entries)
        raise FileExistsError(errno.EEXIST, str(err)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            _rollback(journal, entries)
        raise


def recover(journal: Path, targets: Sequence[Path]) -> str | None:
    """Finish or roll back an interrupted :func:`create_all` for ``targets`` (the paths
    configured now); returns what was done, None when nothing was interrupted."""
    if not os.path.lexists(journal):
        staged = [p for p in map(staged_path, targets) if os.path.lexists(p)]
        for path in staged:
            _unlink(path)
        if not staged:
            return None
        return "rolled back an interrupted CA generation (it had not finished writing its files)"
    entries = _read_journal(journal)
    if {e.target for e in entries} != set(targets):
        _rollback(journal, entries)
        return "rolled back an interrupted CA generation made for other file paths"
    try:
        _publish(journal, entries)
    except Conflict as err:
        _rollback(journal, entries)
        return f"rolled back an interrupted CA generation: {err}"
    return "finished an interrupted CA generation (all three files are now in place)"


@contextlib.contextmanager
def locked(directory: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (released if the process dies)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        log.debug("Cannot lock %r, going on without: %s", str(directory), err)
        yield
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise JournalError(
                        f"credentials directory {str(directory)!r}: another process has held "
                        f"its lock for {timeout_s:g}s; is a second Sentry starting with the "
                        "same credentials? Stop it, or give each its own directory"
                    ) from None
                time.sleep(0.05)
            except OSError as err:  # no flock on this filesystem
                log.debug("Cannot lock %r, going on without: %s", str(directory), err)
                break
        yield
    finally:
        os.close(fd)
