"""Small, careful file I/O: atomic writes of secrets, private directories, bounded reads.

- ``write_atomic(path, data)`` writes a temp file (mode 0600 from creation) in the same directory,
  fsyncs it, renames it over ``path`` and fsyncs the directory, so readers see the old or the new
  content, never half of it. The writer holds an ``flock`` on its temp file, so
  :func:`remove_stale_temps` can tell the temp file of a killed writer (it may hold a private key)
  from one that is being written right now.
- ``ensure_private_dir(path)`` creates ``path`` and every missing parent with mode 0700, whatever
  the umask.
- ``read_file(path, what)`` reads a *regular* file only: a FIFO, a device or a directory is refused
  without being read (a FIFO would block the reader forever), and so is a file over ``limit``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

from pysentry.errors import ConfigError, PysentryError

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
MAX_READ_BYTES = 1 << 20
"""Default cap of :func:`read_file`: PEM files this large are not credentials."""
_TEMP_SUFFIX = ".tmp"
_TEMP_RANDOM = re.compile(r"[a-z0-9_]{8}")  # what tempfile.mkstemp puts between prefix and suffix


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (creations, renames, removals) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode`` (0600 by default)."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            with contextlib.suppress(OSError):  # a filesystem without flock: no live-writer mark
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp, path)  # before close: the lock is held until the name is gone
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def is_temp_of(name: str, target: str) -> bool:
    """Whether ``name`` is a temp file :func:`write_atomic` made for ``target`` (a file name)."""
    prefix = f".{target}."
    if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
        return False
    middle = name[len(prefix) : -len(_TEMP_SUFFIX)]
    return _TEMP_RANDOM.fullmatch(middle) is not None


def remove_stale_temps(path: Path) -> tuple[Path, ...]:
    """Delete the temp files that killed :func:`write_atomic` calls left beside ``path``.

    A temp file whose writer is alive holds an ``flock`` and is left alone. Returns the files
    removed; one that cannot be removed is logged as a warning (it may hold a private key).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError as err:  # missing, or not listable: nothing to find there
        log.debug("Cannot look for stale temp files in %r: %s", str(path.parent), err)
        return ()
    for entry in entries:
        if not is_temp_of(entry.name, path.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if _remove_if_unlocked(entry.path):
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue  # its writer renamed it meanwhile
        except OSError as err:
            log.warning(
                "Cannot remove the stale temp file %r (it may hold a private key; delete it): %s",
                entry.path,
                err.strerror or err,
            )
    return tuple(removed)


def _remove_if_unlocked(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        opened, named = os.fstat(fd), os.lstat(path)
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
            return False  # replaced meanwhile
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> tuple[Path, ...]:
    """Create ``path`` and every missing parent, each with mode 0700 whatever the umask.

    Existing directories are left alone. Returns the directories created, outermost first (so a
    caller that fails later can remove them again); on failure, those made so far are removed.
    A path component that exists but is not a directory raises :class:`NotADirectoryError`
    naming it.
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        if os.path.lexists(probe):  # a file, a dangling symlink, a symlink to a file
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(probe))
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=PRIVATE_DIR_MODE)
            except FileExistsError:
                if directory.is_dir():
                    continue  # made by someone else meanwhile: not ours to change
                raise
            created.append(directory)
            os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    except BaseException:
        remove_created_dirs(tuple(created))  # a failure leaves no half-made tree behind
        raise
    return tuple(created)


def remove_created_dirs(created: tuple[Path, ...]) -> None:
    """Undo :func:`ensure_private_dir`: remove the directories it created, if still empty."""
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


_NOT_REGULAR = "not a regular file; replace it with the PEM file (a symlink to one is fine)"


def _kind(mode: int) -> str | None:
    """What a non-regular file is, for messages; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_file(
    path: Path,
    what: str,
    *,
    limit: int = MAX_READ_BYTES,
    error: type[PysentryError] = ConfigError,
) -> bytes:
    """The bytes of the regular file ``path`` (symlinks followed); ``error`` otherwise.

    The message is ``<what> <path>: <reason>``. Nothing that is not a regular file is opened
    for reading in a way that could block: the type is checked with ``stat`` first, the open is
    non-blocking, and the type is checked again on the open descriptor.
    """
    label = f"{what} {str(path)!r}"
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is not None:
            raise error(f"{label}: is {kind}, {_NOT_REGULAR}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            kind = _kind(os.fstat(fd).st_mode)
            if kind is not None:  # swapped between the stat and the open
                raise error(f"{label}: is {kind}, {_NOT_REGULAR}")
            data = handle.read(limit + 1)
    except FileNotFoundError as err:
        raise error(f"{label}: file does not exist") from err
    except NotADirectoryError as err:
        raise error(f"{label}: a parent of the file is not a directory") from err
    except PermissionError as err:
        raise error(f"{label}: permission denied") from err
    except OSError as err:
        raise error(f"{label}: cannot read: {err.strerror or err}") from err
    if len(data) > limit:
        raise error(f"{label}: larger than {limit} bytes: this is not a PEM credentials file")
    return data
