"""A full disk during first-start CA generation: a clear error, the directory left as found, no
key anywhere; the next start, with space again, generates the CA.

Each case is a tiny tmpfs (we run as root) filled so that generation runs out of blocks or of
inodes at a different step: creating the directory, each staged file, the journal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysentry.credentials import CREDENTIAL_FILENAMES
from pysentry.credentials.history import HISTORY_FILENAME

from .conftest import _wait_healthy
from .prefork import Prefork, spawn_sentry
from .test_store_crash import check_complete_and_clean
from .tmpfs import can_mount, mounted_tmpfs

PAGE = 4096
SIZE_PAGES = 16

pytestmark = pytest.mark.skipif(not can_mount(), reason="needs root to mount a tmpfs")


@pytest.fixture(scope="module")
def prefork() -> Iterator[Prefork]:
    server = Prefork()
    yield server
    server.close()


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: file contents, None for directories."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


# (case id, mount options, layout, free pages left by the filler or None for no filler)
CASES = [
    ("blocks-0-new-dir", f"size={SIZE_PAGES * PAGE}", "new", 0),
    ("blocks-1-existing-dir", f"size={SIZE_PAGES * PAGE}", "existing", 1),
    ("blocks-2-new-parents", f"size={SIZE_PAGES * PAGE}", "parents", 2),
    ("blocks-3-existing-dir", f"size={SIZE_PAGES * PAGE}", "existing", 3),
    ("inodes-mkdir-parents", "size=1m,nr_inodes=2", "parents", None),
    ("inodes-mkdir", "size=1m,nr_inodes=1", "new", None),
    ("inodes-2nd-staged", "size=1m,nr_inodes=3", "existing", None),
    ("inodes-3rd-staged", "size=1m,nr_inodes=4", "existing", None),
    ("inodes-journal", "size=1m,nr_inodes=5", "existing", None),
]


@pytest.mark.parametrize(
    ("options", "layout", "free"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_full_disk_during_first_start(
    prefork: Prefork, tmp_path: Path, options: str, layout: str, free: int | None
) -> None:
    with mounted_tmpfs(tmp_path / "disk", f"{options},mode=0755") as disk:
        creds = disk / "a" / "certs" if layout == "parents" else disk / "certs"
        if layout == "existing":
            creds.mkdir(mode=0o700)
        filler = disk / "filler"
        if free is not None:
            filler.write_bytes(b"\0" * ((SIZE_PAGES - free) * PAGE))
        before = _tree(disk)

        sentry = spawn_sentry(prefork, tmp_path, creds)
        code = sentry.proc.wait(timeout=30)
        log = sentry.log_text()
        assert code == 1, log
        assert "No space left on device" in log
        assert "nothing was written: free some space and start Sentry again" in log
        assert "Traceback" not in log and "[Errno" not in log
        assert _tree(disk) == before  # as found: no directory, staged file, journal or temp
        assert not any(b"PRIVATE KEY" in (v or b"") for v in _tree(disk).values())

        filler.unlink(missing_ok=True)
        if "nr_inodes" in options:
            subprocess_remount(disk, "nr_inodes=100")
        again = spawn_sentry(prefork, tmp_path, creds)
        _wait_healthy(again)
        check_complete_and_clean(creds)
        assert set(os.listdir(creds)) - {HISTORY_FILENAME} == set(CREDENTIAL_FILENAMES)
        assert again.stop() == 0


def subprocess_remount(where: Path, options: str) -> None:
    from .tmpfs import remount

    remount(where, options)
