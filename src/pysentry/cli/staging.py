"""Write a set of files so that a failure leaves the directory as it was.

``write_files(directory, [(name, data), ...])`` first writes every file to a private temp file in
``directory`` and fsyncs it, so a full disk, a quota or an unwritable directory fails before any
file is touched. Only then are the temp files renamed over their targets, in the order given, and
the directory fsynced. Directories are made with ``pysentry.fileio.ensure_private_dir`` (every
missing one 0700, whatever the umask).

Temp files are named ``.dapr-cli.<name>.<random>.tmp``; one left behind by a killed command (it
may hold a private key) is removed by the next write into that directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pysentry.fileio import PRIVATE_FILE_MODE, fsync_dir

TEMP_PREFIX = ".dapr-cli."
TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 60.0  # a staged file older than this belongs to a command that died


def remove_stale_temps(directory: Path, *, now: float | None = None) -> None:
    """Delete temp files of earlier, killed runs (older than :data:`STALE_AFTER_S`)."""
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not (entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and (
                    now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
                ):
                    os.unlink(entry.path)


def _stage(directory: Path, name: str, data: bytes, mode: int) -> Path:
    prefix = f"{TEMP_PREFIX}{name}."
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


class PartiallyWritten(OSError):
    """A rename failed after others succeeded: ``replaced`` names the files already new."""

    def __init__(self, replaced: Sequence[str], err: OSError) -> None:
        super().__init__(err.errno, err.strerror)
        self.replaced = tuple(replaced)


def write_files(
    directory: Path, files: Sequence[tuple[str, bytes]], *, mode: int = PRIVATE_FILE_MODE
) -> None:
    """Stage every file, then rename them into place in order; nothing changes if staging fails.

    An ``OSError`` means no file changed, except :class:`PartiallyWritten` (a rename failing
    after staging succeeded, which takes an I/O error or a concurrent change of the directory).
    """
    remove_stale_temps(directory)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files:
            staged.append((_stage(directory, name, data, mode), directory / name))
        for done, (tmp, target) in enumerate(staged):
            try:
                os.replace(tmp, target)
            except OSError as err:
                if done:
                    raise PartiallyWritten([t.name for _, t in staged[:done]], err) from err
                raise
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    fsync_dir(directory)
