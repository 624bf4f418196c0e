"""Run ``dapr`` as a user would: a subprocess with ``HOME`` set to a temporary directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unprivileged import NOBODY


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


Dapr = Callable[..., Result]


def run_dapr(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    umask: int = -1,
) -> Result:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DAPR_HOME", "DAPR_TRUST_ANCHORS")}
    full_env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "pysentry.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
        umask=umask,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def certs(home: Path) -> Path:
    return home / ".dapr" / "certs"


@pytest.fixture
def dapr(home: Path) -> Dapr:
    def call(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60, umask: int = -1
    ) -> Result:
        return run_dapr(home, *args, env=env, timeout=timeout, umask=umask)

    return call


def snapshot(
    directory: Path, names: Sequence[str] = ("ca.crt", "issuer.crt", "issuer.key")
) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names if (directory / name).exists()}


def tree_state(directory: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under ``directory`` (itself included) with mode, inode, mtime and a content
    hash: equal before and after a command means it wrote, renamed and chmodded nothing."""
    state: dict[str, tuple[int, int, int, str]] = {}
    if not directory.exists():
        return state
    for path in (directory, *sorted(directory.rglob("*"))):
        info = path.lstat()
        digest = ""
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()  # root reads mode-0 files
        state[str(path.relative_to(directory))] = (
            info.st_mode,
            info.st_ino,
            info.st_mtime_ns,
            digest,
        )
    return state


def without_dir_times(
    state: dict[str, tuple[int, int, int, str]],
) -> dict[str, tuple[int, int, int, str]]:
    """``state`` with directories' mtimes zeroed (creating and removing a temp file moves them)."""
    return {
        name: (mode, ino, 0 if stat.S_ISDIR(mode) else mtime, digest)
        for name, (mode, ino, mtime, digest) in state.items()
    }


def run_dapr_forked(home: Path, *args: str, unprivileged: bool = True) -> Result:
    """``dapr <args>`` in a forked child that first drops to uid/gid 65534 (when root).

    The interpreter lives under /root, which nobody cannot reach, so the child cannot exec one;
    forking runs the same ``main()`` as the console script, in a process of its own.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # child
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until _exit
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                # Import first: the standard library under /root is out of nobody's reach.
                import pysentry.config.configuration  # noqa: F401 - loaded lazily by commands
                from pysentry.cli.main import main

                if unprivileged and os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                for name in ("DAPR_HOME", "DAPR_TRUST_ANCHORS"):
                    os.environ.pop(name, None)
                os.environ.update(HOME=str(home), COLUMNS="200")
                try:
                    main(list(args))
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                traceback.print_exc()  # shows in Result.stderr; exit code 70
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, wait_status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return Result(
            os.waitstatus_to_exitcode(wait_status),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A home directory owned by uid 65534 in a world-traversable temp dir (tmp_path is 0700)."""
    workdir = Path(tempfile.mkdtemp(prefix="pysentry-cli-"))
    try:
        workdir.chmod(0o755)
        home = workdir / "home"
        home.mkdir()
        yield home
    finally:
        shutil.rmtree(workdir)


def give_to_nobody(directory: Path) -> None:
    """chown -R 65534:65534 (when root), so the unprivileged child owns what the test wrote."""
    if os.geteuid() != 0:
        return
    for path in (directory, *directory.rglob("*")):
        os.lchown(path, NOBODY, NOBODY)
