"""Processes of the quickstart: started in their own groups, logged, and all stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pysentry.cli.procs import free_port

READY_TIMEOUT_S = 20.0
APP_PREFIX = "== APP == "


class DemoFailed(Exception):
    """A step of the quickstart did not work; the logs are printed."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: Path
    lines: list[str] = field(default_factory=list)
    show_app_lines: bool = True
    reader: threading.Thread | None = None

    def has(self, marker: str) -> bool:
        return any(marker in line for line in list(self.lines))


def _pump(proc: Proc) -> None:
    assert proc.popen.stdout is not None
    with proc.log.open("w") as log:
        for line in proc.popen.stdout:
            log.write(line)
            log.flush()
            proc.lines.append(line.rstrip("\n"))
            if proc.show_app_lines and line.startswith(APP_PREFIX):
                print(f"    [{proc.name}] {line[len(APP_PREFIX) :].rstrip()}", flush=True)


def spawn(name: str, argv: Sequence[str], env: dict[str, str], workdir: Path) -> Proc:
    if argv[:3] == [sys.executable, "-m", "pysentry.cli.main"]:
        print("$ dapr " + " ".join(argv[3:]) + " &", flush=True)
    popen = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    proc = Proc(name, popen, workdir / f"{name}.log")
    proc.reader = threading.Thread(target=_pump, args=(proc,), daemon=True)
    proc.reader.start()
    return proc


def dapr_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pysentry.cli.main", *args]


def sentry_argv(credentials: Path, config: Path, *, port: int, healthz_port: int) -> list[str]:
    """Sentry on ``credentials`` (trust domain ``cluster.local``), metrics on a free port."""
    return [
        sys.executable,
        "-m",
        "pysentry.sentry.main",
        "--issuer-credentials",
        str(credentials),
        "--trust-domain",
        "cluster.local",
        "--port",
        str(port),
        "--healthz-port",
        str(healthz_port),
        "--metrics-port",
        str(free_port()),
        "--config",
        str(config),
    ]


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout_s: float = READY_TIMEOUT_S,
    procs: Sequence[Proc] = (),
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            if proc.popen.poll() is not None:
                raise DemoFailed(
                    f"{proc.name} exited with code {proc.popen.returncode} while waiting for {what}"
                )
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return 200 <= int(resp.status) < 300
    except OSError:
        return False


def processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def stop_all(procs: list[Proc], marker: str) -> list[int]:
    for proc in reversed(procs):
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)
        if proc.reader is not None:
            proc.reader.join(timeout=5)
        if proc.popen.stdout is not None and (proc.reader is None or not proc.reader.is_alive()):
            proc.popen.stdout.close()
    leftovers = processes_mentioning(marker)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers
