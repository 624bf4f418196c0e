"""Processes for ``bench/vs_go.py`` on 127.0.0.1, and what ``/proc`` says about them.

CPU and memory come from ``/proc`` and cover a process and all its descendants (threads
included), so a Sentry with worker processes is counted whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_LINE = "Security is initialized successfully"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
NETNS = 'ip link set lo up && exec "$0" "$@"'


def enter_netns(script: str, argv: list[str]) -> str:
    """Re-run ``script argv --in-netns`` in a private network namespace that has only loopback
    (``unshare --net``, root). Returns only if that cannot be done: the reason and the fix."""
    probe = subprocess.run(
        ["unshare", "--net", "sh", "-c", "ip link set lo up"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return (
            f"cannot enter a private network namespace ({probe.stderr.strip()!r}): run as root "
            "(unshare --net needs CAP_SYS_ADMIN), or pass --host-network"
        )
    cmd = ["unshare", "--net", "sh", "-c", NETNS, sys.executable, script, *argv, "--in-netns"]
    os.execvp(cmd[0], cmd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, body: bytes | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of one request to 127.0.0.1; (0, b"") when nothing answers."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with _NO_PROXY.open(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())
    except (OSError, urllib.error.URLError):
        return 0, b""


# --- /proc -------------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (all threads)."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and Pss (KiB) summed over ``pid`` and its descendants, and how many processes."""
    tree = _tree(pid)
    rss = pss = 0
    for p in tree:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"rss_kib": rss, "pss_kib": pss, "processes": len(tree)}


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    exec_wall: float  # time.time() just before the exec

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@dataclass
class Procs:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "NAMESPACE"))}
        full.update({"HOME": str(self.tmp), "PYTHONUNBUFFERED": "1", **(env or {})})
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            started = time.time()
            popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=full, cwd=self.tmp
            )
        proc = Proc(name, popen, log, started)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def wait_http(proc: Proc, url: str, ok: tuple[int, ...], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited ({proc.popen.returncode}):\n{proc.text()[-3000:]}"
            )
        if http_status(url)[0] in ok:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{proc.name}: {url} not {ok} within {timeout}s:\n{proc.text()[-3000:]}")


_TIME = re.compile(r'time="([^"]+)"')


def log_time(line: str) -> float:
    """The epoch seconds of a Dapr log line's ``time="..."`` (RFC 3339, any fraction digits)."""
    m = _TIME.search(line)
    if m is None:
        raise ValueError(f"log line without time=: {line[:200]!r}")
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", m.group(1)).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def wait_ready_line(proc: Proc, timeout: float = 60) -> tuple[float, float]:
    """(logged, observed): seconds from exec to the time stamp of the first ``READY_LINE`` and
    to the moment this poll (every 5 ms) saw it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.text().splitlines():
            if READY_LINE in line:
                observed = time.time() - proc.exec_wall
                return log_time(line) - proc.exec_wall, observed
        if proc.popen.poll() is not None:
            break
        time.sleep(0.005)
    raise RuntimeError(f"{proc.name}: {READY_LINE!r} not logged:\n{proc.text()[-3000:]}")
