"""Small, careful file I/O: atomic writes of secrets and private directories.

``write_atomic(path, data)`` writes a temp file in the same directory, fsyncs it, renames it over
``path`` and fsyncs the directory, so readers see the old or the new content, never half of it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pysentry.errors import ConfigError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode`` (0600 by default)."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 when missing; existing dirs are left alone."""
    if path.is_dir():
        return
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask


def read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``; :class:`ConfigError` ``<what> <path>: <reason>`` when unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(f"{what} {str(path)!r}: file does not exist") from err
    except IsADirectoryError as err:
        raise ConfigError(f"{what} {str(path)!r}: is a directory, expected a file") from err
    except PermissionError as err:
        raise ConfigError(f"{what} {str(path)!r}: permission denied") from err
    except OSError as err:
        raise ConfigError(f"{what} {str(path)!r}: cannot read: {err.strerror}") from err
