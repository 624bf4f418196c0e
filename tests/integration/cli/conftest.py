"""Run ``dapr`` as a user would: a subprocess with ``HOME`` set to a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


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
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
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
    def call(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        return run_dapr(home, *args, env=env, timeout=timeout)

    return call


def snapshot(
    directory: Path, names: Sequence[str] = ("ca.crt", "issuer.crt", "issuer.key")
) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names if (directory / name).exists()}
