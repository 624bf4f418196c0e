"""Run a check as an unprivileged user, so permission errors are tested even as root."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def unreadable_file(content: bytes) -> Iterator[Path]:
    """A mode-0 file in a world-traversable temp dir (pytest's tmp_path is 0700)."""
    workdir = Path(tempfile.mkdtemp(prefix="pysentry-unreadable-"))
    try:
        workdir.chmod(0o755)
        path = workdir / "secret"
        path.write_bytes(content)
        path.chmod(0)
        yield path
    finally:
        shutil.rmtree(workdir)


def run_unprivileged(check: Callable[[], str]) -> tuple[int, str]:
    """Fork; in the child drop to uid/gid 65534 (when root) and run ``check``.

    Returns ``(exit_code, text)``: exit code 0 with the returned text, or 3 with the text of the
    exception the check raised. Forking keeps the already-imported modules, so the child does not
    need to exec an interpreter the unprivileged user may not reach.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        status = 1
        try:
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            os.write(write_end, check().encode())
            status = 0
        except Exception as err:
            os.write(write_end, str(err).encode())
            status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), text
