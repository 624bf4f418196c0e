"""``dapr run`` (or ``dapr run -f``) in the background, its output in a file, stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.cli.conftest import run_dapr

ROOT = Path(__file__).resolve().parents[3]
HTTP_APP = ROOT / "tests" / "apps" / "http_app.py"


class Background:
    def __init__(self, home: Path, log: Path, *args: str, cwd: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
        env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
        self.home = home
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pysentry.cli.main", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str | Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (what in self.text()) if isinstance(what, str) else what():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{what!r} not seen (exit {self.proc.poll()}):\n{self.text()[-5000:]}")

    def wait_exit(self, timeout_s: float = 30) -> int:
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def listed(home: Path) -> list[dict[str, Any]]:
    result = run_dapr(home, "list", "-o", "json")
    assert result.returncode == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def row_of(home: Path, app_id: str) -> dict[str, Any] | None:
    return next((r for r in listed(home) if r["appId"] == app_id), None)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout_s: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@contextmanager
def background(home: Path, log: Path, *args: str, cwd: Path | None = None) -> Iterator[Background]:
    bg = Background(home, log, *args, cwd=cwd)
    try:
        yield bg
    finally:
        bg.stop()
