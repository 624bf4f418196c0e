"""A small tmpfs mounted for one test (we run as root): a full disk on demand, or fast fsyncs."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def can_mount() -> bool:
    return os.geteuid() == 0


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """``mount -t tmpfs -o <options>`` on ``where`` (created); unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "pysentry-test", str(where)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield where
    finally:
        done = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if done.returncode != 0:  # still busy (a process of a failed test): detach it
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def remount(where: Path, options: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,{options}", str(where)],
        check=True,
        capture_output=True,
        timeout=30,
    )
