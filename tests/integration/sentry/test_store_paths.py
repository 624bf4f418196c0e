"""Where the credentials go: a file in the way is a clear error naming the flag and the fix (not
``[Errno 17] File exists``), and missing parents are created 0700 whatever the umask."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import _wait_healthy, run_sentry_to_exit
from .prefork import Prefork, spawn_sentry


@pytest.fixture(scope="module")
def prefork() -> Iterator[Prefork]:
    server = Prefork()
    yield server
    server.close()


def test_credentials_path_that_is_a_file(tmp_path: Path) -> None:
    creds = tmp_path / "certs"
    creds.write_text("not a directory")
    code, output = run_sentry_to_exit(creds)
    assert code == 1
    assert (
        f"--issuer-credentials {str(creds)!r}: {str(creds)!r} is a file, not a directory; pass a "
        "directory that holds (or may hold) ca.crt, issuer.crt and issuer.key, or move the file "
        "out of the way"
    ) in output
    assert "Errno" not in output and "Traceback" not in output
    assert creds.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("extra", "flag"),
    [((), "--issuer-credentials"), (("--issuer-key-filename", "KEY"), "--issuer-key-filename")],
    ids=["credentials-dir", "absolute-key-file"],
)
def test_a_parent_that_is_a_file(
    prefork: Prefork, tmp_path: Path, extra: tuple[str, ...], flag: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("in the way")
    creds = tmp_path / "certs" if extra else blocker / "sub" / "certs"
    key = blocker / "keys" / "issuer.key"
    args = tuple(str(key) if a == "KEY" else a for a in extra)
    sentry = spawn_sentry(prefork, tmp_path, creds, *args)
    assert sentry.proc.wait(timeout=30) == 1
    log = sentry.log_text()
    assert f"{flag} " in log and f"{str(blocker)!r} is a file, not a directory" in log, log
    assert "move the file out of the way" in log
    assert "Errno" not in log
    assert not (tmp_path / "certs").exists()  # nothing half made


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o002], ids=["000", "022", "002"])
def test_missing_parents_are_created_0700(prefork: Prefork, tmp_path: Path, umask: int) -> None:
    creds = tmp_path / "a" / "b" / "certs"
    sentry = spawn_sentry(prefork, tmp_path, creds, umask=umask)
    _wait_healthy(sentry)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", creds):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert stat.S_IMODE((creds / name).stat().st_mode) == 0o600, name
    assert sentry.stop() == 0
