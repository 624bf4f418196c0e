"""Processes for ``bench/vs_go.py``: Sentry and daprd of either implementation, on 127.0.0.1.

Both implementations get the same command line (Go's daprd also gets an empty
``--resources-path``, a flag pysentry's daprd does not have), the same daprd Configuration
(the ``sqlite`` resolver, one file per implementation, and an ``accessControl`` that denies by
default and allows ``appa``), the same trust anchors and the same Sentry configuration.
CPU and memory come from ``/proc`` and cover a process and all its descendants.
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
IMPLS = ("go", "pysentry")
CALLER, CALLEE, OUTSIDER = "appa", "appb", "appc"
READY_LINE = "Security is initialized successfully"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


# --- the two implementations ------------------------------------------------------------------
@dataclass(frozen=True)
class Impl:
    name: str  # "go" or "pysentry"
    sentry_bin: Path
    daprd_bin: Path
    env: dict[str, str] = field(default_factory=dict)  # e.g. PYTHONPATH for --pysentry-src


@dataclass
class Sentry:
    proc: Proc
    port: int


@dataclass
class Daprd:
    proc: Proc
    app_id: str
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def sentry_config(tmp: Path) -> Path:
    path = tmp / "sentry-config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
        "spec:\n  mtls:\n    enabled: true\n"
    )
    return path


def daprd_config(tmp: Path, db: Path) -> Path:
    """The sqlite resolver on ``db`` and an ACL that allows only ``appa``, checked per call."""
    path = tmp / f"daprd-{db.stem}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: benchconfig\n"
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {db}\n      updateInterval: 5s\n      timeout: 3s\n"
        "  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n"
        f"    - appId: {CALLER}\n      defaultAction: allow\n      trustDomain: public\n"
        "      namespace: default\n"
    )
    return path


def start_sentry(procs: Procs, impl: Impl, creds: Path, name: str) -> Sentry:
    port, health = free_port(), free_port()
    cmd = [str(impl.sentry_bin), "--issuer-credentials", str(creds)]
    cmd += ["--config", str(sentry_config(procs.tmp)), "--trust-domain", "localhost"]
    cmd += ["--port", str(port), "--listen-address", "127.0.0.1"]
    cmd += ["--healthz-port", str(health), "--healthz-listen-address", "127.0.0.1"]
    cmd += ["--metrics-port", str(free_port()), "--metrics-listen-address", "127.0.0.1"]
    proc = procs.spawn(name, cmd, impl.env)
    wait_http(proc, f"http://127.0.0.1:{health}/healthz", (200,))
    return Sentry(proc, port)


def spawn_daprd(
    procs: Procs,
    impl: Impl,
    app_id: str,
    app_port: int | None,
    *,
    sentry_port: int,
    anchors: bytes,
    config: Path,
    name: str,
) -> Daprd:
    http, grpc, internal, metrics = free_port(), free_port(), free_port(), free_port()
    cmd = [str(impl.daprd_bin), "--mode", "standalone", "--app-id", app_id]
    cmd += ["--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc)]
    cmd += ["--dapr-internal-grpc-port", str(internal), "--dapr-listen-addresses", "127.0.0.1"]
    cmd += ["--dapr-internal-grpc-listen-address", "127.0.0.1"]
    cmd += ["--metrics-port", str(metrics), "--metrics-listen-address", "127.0.0.1"]
    cmd += [
        "--config",
        str(config),
        "--enable-mtls",
        "--sentry-address",
        f"127.0.0.1:{sentry_port}",
    ]
    cmd += ["--control-plane-trust-domain", "localhost"]
    if app_port:
        cmd += ["--app-port", str(app_port)]
    if impl.name == "go":
        resources = procs.tmp / "resources-empty"
        resources.mkdir(exist_ok=True)
        cmd += ["--resources-path", str(resources)]
    env = {
        **impl.env,
        "DAPR_TRUST_ANCHORS": anchors.decode(),
        "DAPR_HOST_IP": "127.0.0.1",
        "NAMESPACE": "default",
    }
    return Daprd(procs.spawn(name, cmd, env), app_id, http)


def wait_outbound(d: Daprd, timeout: float = 60) -> None:
    wait_http(d.proc, f"{d.url}/v1.0/healthz/outbound", (204,), timeout)


@dataclass
class Stack:
    impl: Impl
    sentry: Sentry
    caller: Daprd
    callee: Daprd

    @property
    def invoke_url(self) -> str:
        return f"{self.caller.url}/v1.0/invoke/{CALLEE}/method/echo"

    def sidecar_pids(self) -> list[int]:
        return [self.caller.proc.pid, self.callee.proc.pid]


def start_stack(procs: Procs, impl: Impl, creds: Path, anchors: bytes, app_port: int) -> Stack:
    """Sentry, daprd ``appb`` (the echo app behind it) and daprd ``appa``; checks that a 1 KB
    invoke round-trips and that the callee's ACL denies ``appc``, a caller it does not list
    (``appc``'s daprd is stopped again after that check)."""
    sentry = start_sentry(procs, impl, creds, f"{impl.name}-sentry")
    config = daprd_config(procs.tmp, procs.tmp / f"nr-{impl.name}.db")
    daprds = []
    for app_id, port in ((CALLEE, app_port), (CALLER, None), (OUTSIDER, None)):
        d = spawn_daprd(
            procs,
            impl,
            app_id,
            port,
            sentry_port=sentry.port,
            anchors=anchors,
            config=config,
            name=f"{impl.name}-daprd-{app_id}",
        )
        wait_outbound(d)
        daprds.append(d)
    callee, caller, outsider = daprds
    stack = Stack(impl, sentry, caller, callee)
    body = os.urandom(1024)
    deadline = time.monotonic() + 30
    while (got := http_status(stack.invoke_url, body))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # name resolution: appb's row may not be visible yet
    if got != (200, body):
        raise RuntimeError(
            f"{impl.name}: invoke through {stack.invoke_url} failed: {got[0]} {got[1][:300]!r}"
        )
    denied = http_status(f"{outsider.url}/v1.0/invoke/{CALLEE}/method/echo", body)
    outsider.proc.stop()
    if denied[0] != 403:
        raise RuntimeError(
            f"{impl.name}: the ACL let {OUTSIDER} call {CALLEE} (want 403): "
            f"{denied[0]} {denied[1][:300]!r}"
        )
    return stack
